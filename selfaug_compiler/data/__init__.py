"""Task data: reading sources into rows (``sources``, ``packaged``) and the ``ingest`` step."""

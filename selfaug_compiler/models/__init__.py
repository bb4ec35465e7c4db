"""Model references, the GGUF cache, fingerprints and loading.

Import-light: ``reference`` needs no torch; ``loading`` imports torch/transformers lazily.
"""

from selfaug_compiler.models.reference import ModelRef, parse_ref, static_fingerprint

__all__ = ["ModelRef", "parse_ref", "static_fingerprint"]

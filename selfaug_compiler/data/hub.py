"""Hub dataset ids (``task.source: {kind: hf, path: org/name}``) through ``datasets.load_dataset``.

Offline (``HF_DATASETS_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``, or no network) ``datasets`` reads the
local cache: ``$HF_DATASETS_CACHE`` (default ``$HF_HOME/datasets``, ``~/.cache/huggingface/datasets``)
holds one folder per build, ``<org>___<name>/<config>/<version>/<hash>``, where the hash is the
hub commit the build came from. ``cached_revisions`` reads that layout without importing
``datasets`` (validate and compile stay light); the newest cached hash is the resolved revision
that goes into the ingest step's ``source_fingerprint`` (compile/fingerprints.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from selfaug_compiler.errors import SelfaugError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FIX = ("run once where the Hub is reachable (the dataset is then cached), or save it with "
       "`datasets.load_dataset(...).save_to_disk(FOLDER)` and give the folder as task.source.path")


def is_hub_id(path: str) -> bool:
    return bool(HUB_ID.match(path))


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    return _truthy("HF_DATASETS_OFFLINE") or _truthy("HF_HUB_OFFLINE")


def datasets_cache() -> Path:
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "datasets"


def _snake(name: str) -> str:  # datasets.naming.camelcase_to_snakecase
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def cached_revisions(repo_id: str, config: str | None = None) -> list[str]:
    """Hashes (hub commits) of the cached builds of ``repo_id``, newest first."""
    org, _, name = repo_id.partition("/")
    root = datasets_cache() / f"{org}___{_snake(name)}"
    if not root.is_dir():
        return []
    builds = [p for p in root.glob("*/*/*") if p.is_dir() and (config is None or p.parts[-3] == config)]
    return [p.name for p in sorted(builds, key=lambda p: p.stat().st_mtime, reverse=True)]


def resolved_revision(repo_id: str, config: str | None, revision: str | None) -> str:
    """What the fingerprint names: the pinned revision, else the newest cached build's commit."""
    if revision:
        return revision
    cached = cached_revisions(repo_id, config)
    return cached[0] if cached else "uncached"


def unavailable(repo_id: str, config: str | None, revision: str | None) -> str | None:
    """Why ``run`` could not load the dataset (None: it can): neither the cache nor the Hub has it."""
    if cached_revisions(repo_id, config):
        return None
    if offline():
        return "it is not in the local datasets cache and offline mode is on (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE)"
    try:
        from huggingface_hub import HfApi

        HfApi().dataset_info(repo_id, revision=revision, timeout=10)
    except Exception as exc:  # no network, unknown id, gated: the run would fail the same way
        return f"it is not in the local datasets cache and the Hub did not answer ({type(exc).__name__})"
    return None


def load_hub_table(repo_id: str, config: str | None, split: str | None, revision: str | None):
    """The split as an Arrow table (``datasets.load_dataset``; the cache when offline)."""
    import datasets

    try:
        ds = datasets.load_dataset(repo_id, config, split=split or "train", revision=revision)
    except Exception as exc:
        raise SelfaugError(f"hub dataset {repo_id!r} could not be loaded: {type(exc).__name__}: {exc}"[:600],
                           field="task.source.path", found=repo_id, hint=FIX) from None
    return ds.data.table

"""Weights-and-tokenizer fingerprints of model folders (for provenance and artifact ids).

Hashing every weight byte of a large model is slow, so the digest of a folder is cached in a
small sidecar keyed by each file's (name, size, mtime): a folder is hashed once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from selfaug_compiler.models.cache import file_sha256
from selfaug_compiler.models.reference import TOKENIZER_FILES, WEIGHT_SUFFIXES

SIDE_CAR = ".selfaug-fingerprint.json"


def _fingerprinted_files(folder: Path) -> list[Path]:
    names = set(TOKENIZER_FILES) | {"config.json", "adapter_config.json"}
    return sorted(
        f for f in folder.iterdir() if f.is_file() and (f.name in names or f.suffix in WEIGHT_SUFFIXES)
    )


def folder_fingerprint(folder: Path) -> str:
    """sha256 over the config, tokenizer and weight files of a model or adapter folder."""
    folder = Path(folder)
    files = _fingerprinted_files(folder)
    stamp = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    sidecar = folder / SIDE_CAR
    if sidecar.is_file():
        try:
            cached = json.loads(sidecar.read_text())
            if cached.get("stamp") == stamp:
                return cached["fingerprint"]
        except (ValueError, KeyError):
            pass
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    fingerprint = h.hexdigest()[:24]
    try:
        sidecar.write_text(json.dumps({"stamp": stamp, "fingerprint": fingerprint}))
    except OSError:  # read-only folder: fine, just not cached
        pass
    return fingerprint

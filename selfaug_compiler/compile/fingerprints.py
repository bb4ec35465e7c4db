"""Cheap, static fingerprints that go into plan ids (no weights read, no torch).

- model: ``selfaug_compiler.models.reference.static_fingerprint`` (the models area owns it):
  ``<dist>==<version>:<gguf file>`` for packaged models, ``hub:<id>@<revision>``, or a sha256
  over config/tokenizer files and (name, size) of weight files for a local folder;
- task source: sha256 of a local file, ``<dist>==<version>`` for packaged data, and for HF
  datasets the id/config/split (or the saved folder's ``state.json`` fingerprint).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from selfaug_compiler.compile.known_benchmarks import packaged_version
from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.recipe.schema import FileSource, HFSource, ModelSpec, PackagedSource, content_view


def file_sha256(path: Path) -> str:
    return _file_sha256(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns)


@lru_cache(maxsize=128)
def _file_sha256(path: str, size: int, mtime: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_fingerprint(spec: ModelSpec, base_dir: Path) -> str:
    from selfaug_compiler.models.reference import parse_ref, static_fingerprint

    ref = parse_ref(spec.ref, revision=spec.revision, base_dir=base_dir)
    return static_fingerprint(ref)


def model_param(spec: ModelSpec, base_dir: Path) -> dict[str, Any]:
    """What every model-using step gets as ``params["model"]``."""
    return {"spec": content_view(spec), "fingerprint": model_fingerprint(spec, base_dir)}


def source_fingerprint(source: Any, base_dir: Path) -> str:
    if isinstance(source, FileSource):
        path = base_dir / source.path
        if not path.is_file():
            raise SelfaugError(f"data file `{source.path}` does not exist", field="task.source.path", found=str(path))
        return "sha256:" + file_sha256(path)
    if isinstance(source, PackagedSource):
        return packaged_version(source.name) or f"packaged:{source.name}:missing"
    if isinstance(source, HFSource):
        state = base_dir / source.path / "state.json"
        if state.is_file():
            data = json.loads(state.read_text(encoding="utf-8"))
            return f"hf-disk:{data.get('_fingerprint', file_sha256(state))}"
        from selfaug_compiler.data.hub import resolved_revision

        revision = resolved_revision(source.path, source.name, source.revision)
        return f"hf:{source.path}:{source.name}:{source.split}@{revision}"
    raise TypeError(f"unknown source {source!r}")

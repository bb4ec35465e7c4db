"""The model cache: packaged GGUF files converted once to normal HF folders.

De-quantizing the GGUF takes ~15 s; a converted folder reloads in well under a second. The
conversion writes into a temporary folder and renames it into place, under a file lock, so a
crash or a second process never leaves a half-written model behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from selfaug_compiler.models.reference import gguf_identity, packaged_gguf_path


def cache_root() -> Path:
    """``SELFAUG_CACHE`` or ``~/.cache/selfaug``."""
    root = os.environ.get("SELFAUG_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "selfaug"


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stamped_digest(path: Path, memo: Path) -> str:
    """sha256 of a large file, remembered in ``memo`` under its (size, mtime) stamp."""
    stat = path.stat()
    stamp = [str(path), stat.st_size, stat.st_mtime_ns]
    try:
        cached = json.loads(memo.read_text())
        if cached.get("stamp") == stamp:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = file_sha256(path)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({"stamp": stamp, "sha256": digest}))
    except OSError:
        pass
    return digest


def converted_packaged_model(name: str) -> Path:
    """The HF folder of a packaged GGUF model, converting it on first use."""
    gguf = packaged_gguf_path(name)
    digest = _stamped_digest(gguf, cache_root() / "models" / f"{name}.sha256.json")[:16]
    target = cache_root() / "models" / f"{name}-{digest}"
    if (target / "config.json").is_file():
        return target
    with file_lock(target.with_suffix(".lock")):
        if (target / "config.json").is_file():
            return target
        _convert_gguf(gguf, target)
    return target


def converted_gguf_file(gguf: Path) -> Path:
    """The HF folder of a user's GGUF file (``model.ref: path/to/model.gguf``), converted on first
    use into the same cache as the packaged model, keyed by the file's name and identity."""
    target = cache_root() / "models" / f"gguf-{gguf.stem}-{gguf_identity(gguf)}"
    if (target / "config.json").is_file():
        return target
    with file_lock(target.with_suffix(".lock")):
        if not (target / "config.json").is_file():
            _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"selfaug: converting {gguf.name} to a cached HF folder (once, ~15 s) ...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The de-quantized weights are plain fp32 tensors: drop the GGUF quantizer so the
    # folder saves and reloads as an ordinary model.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    from selfaug_compiler.files import make_temp_dir

    tmp = make_temp_dir(target)  # 0755 under umask 022, not mkdtemp's 0700
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

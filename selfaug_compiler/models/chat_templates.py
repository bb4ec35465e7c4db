"""Chat templates without torch: selfaug's named ones and whether a model ships its own.

``model.chat_template`` is a jinja file relative to the recipe or a name shipped with selfaug
(``selfaug_compiler/templates/chat/<name>.jinja``, e.g. ``chatml``). A base model whose tokenizer
has no chat template must get one this way: ``validate`` refuses it otherwise (issue 11.3).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from selfaug_compiler.recipe.paths import SELFAUG_TEMPLATES

CHAT_DIR = SELFAUG_TEMPLATES / "chat"


def named_chat_templates() -> list[str]:
    return sorted(p.stem for p in CHAT_DIR.glob("*.jinja"))


def chat_template_file(name: str, base_dir: Path | None) -> Path:
    """The file ``model.chat_template`` means: a file next to the recipe wins over a named one."""
    local = (base_dir / name) if base_dir is not None else Path(name)
    stem = Path(name).name  # the steps pass the name resolved against the recipe folder
    if local.is_file() or stem not in named_chat_templates():
        return local
    return CHAT_DIR / f"{stem}.jinja"


def _gguf_has_template(path: Path) -> bool:
    from selfaug_compiler.compile.model_info import _read_str, _read_value

    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            return False
        _version, _tensors, kv_count = struct.unpack("<IQQ", f.read(20))
        for _ in range(kv_count):
            key = _read_str(f)
            (vtype,) = struct.unpack("<I", f.read(4))
            value = _read_value(f, vtype, key)
            if key == "tokenizer.chat_template":
                return bool(value)
    return False


def _folder_has_template(folder: Path) -> bool | None:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))


def model_has_chat_template(ref: str, revision: str | None, base_dir: Path | None) -> bool | None:
    """Whether the model's tokenizer carries a chat template (None: cannot tell without loading)."""
    from selfaug_compiler.models.reference import hub_cache_dir, packaged_gguf_path, parse_ref

    parsed = parse_ref(ref, revision=revision, base_dir=base_dir)
    if parsed.kind == "packaged":
        return _gguf_has_template(packaged_gguf_path(parsed.name))
    if parsed.kind == "gguf":
        return _gguf_has_template(Path(parsed.name)) if Path(parsed.name).is_file() else None
    folder = Path(parsed.name) if parsed.kind == "local" else hub_cache_dir(parsed)
    return _folder_has_template(folder) if folder is not None and folder.is_dir() else None


def chat_template_param(name: str | None, base_dir: Path) -> dict[str, str]:
    """What a train step's id holds of the recipe's chat template beyond its name: the sha256 of
    the file used (absent without one, so recipes that set none keep their ids)."""
    if not name:
        return {}
    import hashlib

    path = chat_template_file(name, base_dir)
    return {"chat_template_sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"}

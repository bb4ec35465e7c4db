"""Loading models for generation, training and evaluation: the right folder, device and dtype.

``load_model`` accepts every reference ``models.reference`` understands, plus artifact folders
written by the train step (full models, or LoRA adapters whose ``selfaug_artifact.json`` names
the base model). ``dtype="auto"`` picks bf16 on CUDA devices that support it and on CPUs with
native bf16 instructions (detected, never assumed), else fp32: ``precision.dtype_name`` decides,
the same function `validate` uses for its memory estimate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.models.fingerprint import folder_fingerprint
from selfaug_compiler.models.reference import ModelRef, hub_cache_dir, parse_ref
from selfaug_compiler.precision import cpu_has_fast_bf16, dtype_name  # noqa: F401 (cpu_has_fast_bf16: re-exported)

ARTIFACT_META = "selfaug_artifact.json"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    ref: str
    fingerprint: str
    device: Any
    dtype: Any
    folder: Path | None = None


def resolve_device(preference: str = "auto") -> str:
    import torch

    if preference == "cuda" and not torch.cuda.is_available():
        raise SelfaugError(
            "execution.device is cuda but no CUDA device is visible",
            field="execution.device",
            expected="auto or cpu on this machine",
            found="cuda",
        )
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


def resolve_dtype(preference: str, device: str) -> Any:
    """The torch dtype for ``dtype: preference`` on ``device`` (the decision is ``precision.dtype_name``)."""
    import torch

    cuda_bf16 = torch.cuda.is_bf16_supported() if device.startswith("cuda") and preference == "auto" else None
    return getattr(torch, dtype_name(preference, device, cuda_bf16=cuda_bf16))


def model_folder(ref: str, *, revision: str | None = None, base_dir: Path | None = None) -> tuple[ModelRef, Path | str]:
    """The folder (or hub id, when only the hub has it) that transformers should load."""
    parsed = parse_ref(ref, revision=revision, base_dir=base_dir)
    if parsed.kind == "packaged":
        from selfaug_compiler.models.cache import converted_packaged_model

        return parsed, converted_packaged_model(parsed.name)
    if parsed.kind == "gguf":
        from selfaug_compiler.models.cache import converted_gguf_file

        return parsed, converted_gguf_file(Path(parsed.name))
    if parsed.kind == "local":
        folder = Path(parsed.name)
        if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            raise SelfaugError(
                f"model folder {folder} has no config.json",
                field="model.ref",
                expected="a folder saved with save_pretrained (config.json, weights, tokenizer)",
                found=str(folder),
            )
        return parsed, folder
    snapshot = hub_cache_dir(parsed)
    return parsed, snapshot if snapshot is not None else parsed.name


def _adapter_base(folder: Path) -> tuple[str, str | None]:
    meta_file = folder / ARTIFACT_META
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("base_model"):
            return meta["base_model"], meta.get("base_revision")
    config = json.loads((folder / "adapter_config.json").read_text())
    return config["base_model_name_or_path"], config.get("revision")


def load_tokenizer(folder: Path | str, *, trust_remote_code: bool = False, chat_template: str | None = None,
                   revision: str | None = None, prompt_format: str = "chat") -> Any:
    """The tokenizer, its chat template overridden by ``chat_template`` and marked with the recipe's
    ``model.prompt_format`` (``models/completion.py``: the one chat-or-completion decision)."""
    from transformers import AutoTokenizer

    from selfaug_compiler.models.completion import mark

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code, revision=revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if chat_template is not None:
        from selfaug_compiler.models.chat_templates import chat_template_file

        tokenizer.chat_template = chat_template_file(chat_template, None).read_text(encoding="utf-8")
    return mark(tokenizer, prompt_format)


def load_model(
    ref: str,
    *,
    revision: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    chat_template: str | None = None,
    base_dir: Path | None = None,
    prompt_format: str = "chat",
) -> LoadedModel:
    """Load a causal LM and its tokenizer, ready for inference (``eval()`` mode)."""
    from selfaug_compiler.threads import ensure_torch_threads

    ensure_torch_threads()  # torch's pool sized from the CPU affinity unless a step set it
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weights bar per load drowns selfaug's own progress

    parsed, folder = model_folder(ref, revision=revision, base_dir=base_dir)
    device_name = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device_name)
    is_adapter = isinstance(folder, Path) and (folder / "adapter_config.json").is_file()
    if is_adapter:
        base_ref, base_revision = _adapter_base(folder)
        base = load_model(base_ref, revision=base_revision, dtype=dtype, device=device,
                          trust_remote_code=trust_remote_code, chat_template=chat_template, base_dir=base_dir,
                          prompt_format=prompt_format)
        from peft import PeftModel

        model = PeftModel.from_pretrained(base.model, folder).merge_and_unload()
        tokenizer = base.tokenizer
    else:
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch_dtype, trust_remote_code=trust_remote_code,
            revision=revision if parsed.kind == "hub" else None,
        )
        tokenizer = load_tokenizer(folder, trust_remote_code=trust_remote_code, chat_template=chat_template,
                                   prompt_format=prompt_format,
                                   revision=revision if parsed.kind == "hub" else None)
    model.to(device_name)
    model.eval()
    fingerprint = folder_fingerprint(folder) if isinstance(folder, Path) else f"hub:{folder}@{revision or 'main'}"
    return LoadedModel(model, tokenizer, str(parsed), fingerprint, device_name, torch_dtype,
                       folder if isinstance(folder, Path) else None)

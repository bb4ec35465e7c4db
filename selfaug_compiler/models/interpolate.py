"""Weight interpolation between the base and a fine-tuned model (WiSE-FT; issue 15.1).

theta_alpha = (1 - alpha) * theta_base + alpha * theta_ft, tensor by tensor. For a LoRA artifact
the adapter is scaled by alpha before it is merged (``LoraLayer.scale_layer``): the merged weight
is W + alpha * (B A * scaling), which is the same formula since only the adapted weights differ.
Layers that were frozen are equal in both models, so the formula leaves them as they were.
The result is a full model folder (config, weights, tokenizer) that ``load_model`` loads like
any other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

INTERPOLATE_META = "selfaug_interpolation.json"


def interpolate_state(base: dict[str, Any], tuned: dict[str, Any], alpha: float) -> dict[str, Any]:
    """(1 - alpha) * base + alpha * tuned for every floating tensor; others (integer buffers) from
    ``tuned``. The two state dicts must have the same keys and shapes."""
    missing = sorted(set(base) ^ set(tuned))
    if missing:
        raise ValueError(f"base and fine-tuned models differ in parameters: {missing[:5]}")
    out: dict[str, Any] = {}
    for name, ft in tuned.items():
        b = base[name]
        if tuple(b.shape) != tuple(ft.shape):
            raise ValueError(f"parameter {name}: shape {tuple(b.shape)} vs {tuple(ft.shape)}")
        if not ft.is_floating_point():
            out[name] = ft.clone()
            continue
        mixed = b.detach().float() * (1.0 - alpha) + ft.detach().float() * alpha
        out[name] = mixed.to(ft.dtype)
    return out


def _is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def interpolated_model(base_ref: str, tuned: Path, alpha: float, *, base_revision: str | None = None,
                       dtype: str = "float32", base_dir: Path | None = None) -> tuple[Any, Any]:
    """The interpolated model (on CPU, in ``dtype``) and the tokenizer of the fine-tuned artifact."""
    from selfaug_compiler.models.loading import _adapter_base, load_model

    tuned = Path(tuned)
    adapter_base, adapter_revision = _adapter_base(tuned) if _is_adapter(tuned) else (None, None)
    if adapter_base == base_ref:  # an adapter on the base itself (not on an earlier stage's model)
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        base = load_model(adapter_base, revision=adapter_revision, dtype=dtype, device="cpu", base_dir=base_dir)
        peft_model = PeftModel.from_pretrained(base.model, tuned)
        for module in peft_model.modules():
            if isinstance(module, LoraLayer):
                module.scale_layer(alpha)  # scaling *= alpha for the active adapter
        return peft_model.merge_and_unload(), base.tokenizer
    # full/freeze, or an adapter trained on a previous stage's model (load_model merges it there)
    base = load_model(base_ref, revision=base_revision, dtype=dtype, device="cpu", base_dir=base_dir)
    ft = load_model(str(tuned), dtype=dtype, device="cpu", base_dir=base_dir)
    state = interpolate_state(base.model.state_dict(), ft.model.state_dict(), alpha)
    ft.model.load_state_dict(state)
    return ft.model, ft.tokenizer


def save_interpolated(base_ref: str, tuned: Path, alpha: float, target: Path, *, base_revision: str | None = None,
                      dtype: str = "float32", base_dir: Path | None = None) -> str:
    """Write theta_alpha as a full model folder to ``target`` (atomically: a temporary folder
    renamed into place); returns its fingerprint."""
    import shutil

    from selfaug_compiler.models.fingerprint import folder_fingerprint

    model, tokenizer = interpolated_model(base_ref, tuned, alpha, base_revision=base_revision, dtype=dtype,
                                          base_dir=base_dir)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    fingerprint = folder_fingerprint(tmp)
    meta = {"alpha": alpha, "base_model": base_ref, "tuned": str(tuned), "fingerprint": fingerprint}
    (tmp / INTERPOLATE_META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return fingerprint

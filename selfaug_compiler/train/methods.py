"""The three training methods: which parameters train.

- ``full``: every parameter.
- ``lora``: peft LoRA adapters (r, alpha, dropout, target modules) on a frozen base; target names
  are checked against the model's linear layers before anything else happens.
- ``freeze``: the listed decoder layers (``"0-15"``, ``"0,2,4-6"`` or a list of indices) and,
  optionally, the input embeddings are frozen; everything else trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from selfaug_compiler.errors import SelfaugError


@dataclass
class TrainableReport:
    method: str
    trainable: int
    total: int
    frozen_layers: list[int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "trainable_params": self.trainable, "total_params": self.total,
                "trainable_share": round(self.trainable / max(self.total, 1), 6),
                "frozen_layers": self.frozen_layers}


def parse_layers(spec: str | list[int], num_layers: int) -> list[int]:
    """Layer indices from ``"0-15"``, ``"0,2,4-6"`` or a list; every index must exist."""
    found = str(spec)
    indices: set[int] = set()
    parts = spec if isinstance(spec, list) else [p.strip() for p in str(spec).split(",") if p.strip()]
    try:
        for part in parts:
            if isinstance(part, int):
                indices.add(part)
                continue
            lo, sep, hi = part.partition("-")
            first, last = int(lo), int(hi) if sep else int(lo)
            if last < first:
                raise ValueError(part)
            indices.update(range(first, last + 1))
    except ValueError:
        raise SelfaugError(
            "cannot read the layers to freeze", field="train.freeze.layers",
            expected='indices and ranges like "0-15", "0,2,4-6", or a list of integers', found=found,
        ) from None
    bad = sorted(i for i in indices if not 0 <= i < num_layers)
    if bad:
        raise SelfaugError(
            f"layer index out of range: {bad}", field="train.freeze.layers",
            expected=f"indices in 0-{num_layers - 1} (the model has {num_layers} layers)", found=found,
        )
    return sorted(indices)


def decoder_layers(model: Any) -> Any:
    """The model's list of transformer blocks."""
    import torch

    n = getattr(model.config, "num_hidden_layers", None)
    for candidate in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj = model
        for attr in candidate.split("."):
            obj = getattr(obj, attr, None)
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise SelfaugError("cannot find the decoder layers of this model for train.method freeze",
                       field="train.method", hint="use method full or lora for this architecture")


def linear_module_names(model: Any) -> list[str]:
    """Short names (last path component) of the linear layers LoRA can target."""
    import torch

    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and name}
    return sorted(names)


def _count(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def apply_lora(model: Any, lora: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    available = linear_module_names(model)
    missing = [t for t in lora.target_modules if t not in available]
    if missing:
        raise SelfaugError(
            f"LoRA target module(s) not in this model: {', '.join(missing)}",
            field="train.lora.target_modules",
            expected=f"names of linear layers: {', '.join(available)}",
            found=", ".join(lora.target_modules),
        )
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def apply_freeze(model: Any, freeze: Any) -> list[int]:
    layers = decoder_layers(model)
    indices = parse_layers(freeze.layers, len(layers))
    for i in indices:
        for p in layers[i].parameters():
            p.requires_grad_(False)
    if freeze.embeddings:
        for p in model.get_input_embeddings().parameters():
            p.requires_grad_(False)
    return indices


def apply_method(model: Any, spec: Any) -> tuple[Any, TrainableReport]:
    """Prepare ``model`` for ``spec.method``; returns the (possibly wrapped) model and a report."""
    frozen = None
    for p in model.parameters():
        if p.is_floating_point():  # not the packed 4-bit weights of a QLoRA base
            p.requires_grad_(True)
    if spec.method == "lora":
        model = apply_lora(model, spec.lora)
    elif spec.method == "freeze":
        frozen = apply_freeze(model, spec.freeze)
    trainable, total = _count(model)
    if trainable == 0:
        raise SelfaugError("nothing left to train: every parameter is frozen", field="train.freeze",
                           hint="freeze fewer layers")
    return model, TrainableReport(spec.method, trainable, total, frozen)

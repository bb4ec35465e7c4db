"""Checks that need the model's architecture (read from GGUF metadata or config.json)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selfaug_compiler.compile.model_info import ModelInfo, ModelInfoError, read_model_info
from selfaug_compiler.recipe.diagnostics import suggest
from selfaug_compiler.recipe.schema import StageSpec

if TYPE_CHECKING:  # pragma: no cover
    from selfaug_compiler.compile.checks import Checker


def parse_layers(spec: str | list[int]) -> list[int]:
    """``"0-15"``, ``"0,2,4-6"`` or a list -> sorted layer indices; ValueError when malformed."""
    if isinstance(spec, list):
        return sorted(set(spec))
    out: set[int] = set()
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if sep:
            a, b = int(lo), int(hi)
            if b < a:
                raise ValueError(f"range {part} runs backwards")
            out.update(range(a, b + 1))
        else:
            out.add(int(part))
    return sorted(out)


def check_model(checker: "Checker", stages: list[StageSpec]) -> ModelInfo | None:
    spec = checker.recipe.model
    try:
        info = read_model_info(spec.ref, spec.revision, checker.loaded.base_dir)
    except (ModelInfoError, OSError) as exc:
        checker.add(("model", "ref"), f"the model reference does not resolve: {exc}", found=spec.ref,
                    expected="packaged:smollm2-135m-instruct, a local folder with config.json, or a cached hub id")
        return None
    for i, stage in enumerate(stages):
        assert stage.train is not None
        at = checker.train_path(i)
        train = stage.train
        if train.max_length > info.context_length:
            checker.add(at + ("max_length",), f"max_length {train.max_length} exceeds the model's context "
                        f"({info.context_length} tokens)", expected=f"<= {info.context_length}", found=str(train.max_length))
        if train.method == "lora":
            _check_lora_targets(checker, info, train.lora.target_modules, at + ("lora", "target_modules"))
        if train.method == "freeze":
            _check_freeze_layers(checker, info, train.freeze.layers, at + ("freeze", "layers"))
        _check_generation_length(checker, info, stage, i)
    return info


def _check_lora_targets(checker: "Checker", info: ModelInfo, targets: list[str], at: tuple[Any, ...]) -> None:
    known = info.linear_modules
    if not known:
        checker.add(at, f"cannot check LoRA targets for architecture `{info.architecture}`", severity="warning")
        return
    for j, name in enumerate(targets):
        if name not in known:
            close = suggest(name, known)
            checker.add(at + (j,), f"`{name}` is not a linear module of a {info.architecture} model",
                        expected="one of: " + ", ".join(known), found=name,
                        hint=f"did you mean `{close}`?" if close else None)


def _check_freeze_layers(checker: "Checker", info: ModelInfo, spec: str | list[int], at: tuple[Any, ...]) -> None:
    try:
        layers = parse_layers(spec)
    except ValueError as exc:
        checker.add(at, f"cannot read the layer list: {exc}", expected='indices or ranges: "0-15", "0,2,4-6"', found=repr(spec))
        return
    bad = [n for n in layers if n < 0 or n >= info.num_layers]
    if bad:
        checker.add(at, f"layer indices {bad} do not exist: the model has {info.num_layers} layers",
                    expected=f"indices 0..{info.num_layers - 1}", found=repr(spec))
    elif len(layers) == info.num_layers:
        checker.add(at, "every layer is frozen: only the head (if not frozen) would train", severity="warning")


def _check_generation_length(checker: "Checker", info: ModelInfo, stage: StageSpec, i: int) -> None:
    aug = stage.augment
    limits = []
    if aug is not None and aug.method == "sa_sft":
        limits.append(("sampling", "max_new_tokens", aug.sampling.max_new_tokens * aug.turns))
    elif aug is not None and aug.method == "s3ft":
        limits += [("answer", "max_new_tokens", aug.answer.max_new_tokens),
                   ("paraphrase", "max_new_tokens", aug.paraphrase.max_new_tokens)]
    elif aug is not None and aug.method == "sdft":
        limits.append(("sampling", "max_new_tokens", aug.sampling.max_new_tokens))
    for section, name, value in limits:
        if value >= info.context_length:
            checker.add(checker.augment_path(i) + (section, name), f"{value} new tokens do not fit the model's "
                        f"context of {info.context_length}", expected=f"< {info.context_length}", found=str(value))

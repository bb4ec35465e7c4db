"""The ``evaluate`` step: (model, benchmark) -> per-item results + metrics, cached in the store.

params (content; enter the step id):
    benchmark:       a registry name, ``heldout``, a custom name or ``lm_eval:TASK_OR_YAML``
    lm_eval:         for lm_eval: benchmarks: {"settings", "include_path", "task", "lm_eval_version",
                     "builtin", "files"} (see ``compile/planner.py:lm_eval_param``)
    custom:          optional {"path", "type", "answer_type"} for a recipe's own benchmark file
    answer_type:     for ``heldout``: number | code | text (default: inferred from the gold)
    limit, seed:     the fixed item subset
    prompt:          a packaged benchmark's {"num_fewshot", "fewshot_seed", "chat_template"}
                     (eval.packaged; absent unless the recipe sets it; evaluate/prompting.py)
    max_new_tokens:  generation benchmarks
    stop:            ``eval.stop`` (absent unless set): generated replies end before the first one
    model:           {"ref", "revision", "dtype", "chat_template", "trust_remote_code"}: the base
                     model, used when no input step provides a model artifact
    backend:         ``eval.backend``'s content (kind, served_model, mode) when not transformers:
                     generation runs on it (``eval_backend.py``); absent = transformers
speed: ``eval_batch_size`` (or ``batch_size``), ``device``, ``backend`` (the backend's speed settings).
inputs: optional train step (``StepResult.model``: the artifact folder to evaluate) and, for
``heldout``, the ingest step (``datasets["heldout"]``); ``style_retention`` (see
``style_step.py``) reads the task ingest steps' ``datasets["train"]``.

The result's metrics carry ``model_key`` and ``fingerprint``: the report step reads the per-item
results from the store with them.
"""

from __future__ import annotations

import json
from typing import Any

from selfaug_compiler.augment import conversation as conv
from selfaug_compiler.errors import StepFailed
from selfaug_compiler.evaluate.catalog import is_lm_eval
from selfaug_compiler.evaluate.core import EvalOutcome, LazyModel, evaluate_cached, run_benchmark, summarize
from selfaug_compiler.evaluate.eval_backend import refuse_checkpoint, step_backend_spec, with_backend
from selfaug_compiler.evaluate.items import GenItem
from selfaug_compiler.evaluate.registry import Benchmark, load_benchmark, replicate, subset, with_stop
from selfaug_compiler.models.completion import prompt_format
from selfaug_compiler.runtime import StepContext, StepResult


def _model(ctx: StepContext) -> LazyModel:
    model_params = dict(ctx.step.params.get("model") or {})
    spec = dict(model_params.get("spec") or model_params)  # the planner nests the model section under "spec"
    device = ctx.step.speed.get("device", "auto")
    trained = [r for r in ctx.inputs.values() if r.model]
    if len(trained) > 1:
        raise StepFailed(ctx.step.name, "more than one input step provides a model")
    ref = trained[0].model if trained else spec.get("ref", "packaged:smollm2-135m-instruct")
    refuse_checkpoint(step_backend_spec(ctx.step), bool(trained))  # an endpoint cannot serve the checkpoint
    return LazyModel(ref, revision=None if trained else spec.get("revision"), dtype=spec.get("dtype", "auto"),
                     device=device, trust_remote_code=bool(spec.get("trust_remote_code", False)),
                     chat_template=str(ctx.resolve_path(spec["chat_template"])) if spec.get("chat_template") else None,
                     base_dir=ctx.recipe_dir, prompt_format=prompt_format(spec),
                     backend=step_backend_spec(ctx.step), trained=bool(trained))


def _heldout_ref(ctx: StepContext) -> str:
    refs = [r.datasets["heldout"] for r in ctx.inputs.values() if "heldout" in r.datasets]
    if not refs:
        raise StepFailed(ctx.step.name, "benchmark `heldout` needs an ingest step with a held-out dataset as input")
    return refs[0]


def _infer_answer_type(golds: list[str]) -> str:
    from selfaug_compiler.judges.numeric import normalize_number

    numeric = [g for g in golds if g is not None and normalize_number(str(g)) is not None]
    return "number" if golds and len(numeric) == len(golds) else "text"


def heldout_benchmark(ctx: StepContext) -> Benchmark:
    """The task's held-out rows as a generation benchmark (gold = the final number or response)."""
    ref = _heldout_ref(ctx)
    table = ctx.store.read(ref)
    rows = table.select([c for c in ("key", "prompt", "response", "messages", "meta")
                         if c in table.column_names]).to_pylist()
    if not rows:
        raise StepFailed(ctx.step.name, f"held-out dataset {ref} is empty", hint="set task.split.heldout >= 1")
    metas = [json.loads(r["meta"]) if r.get("meta") else {} for r in rows]
    golds = [m.get("gold", conv.target(r)) for m, r in zip(metas, rows)]
    answer_type = ctx.step.params.get("answer_type") or _infer_answer_type(golds)
    labels = None
    if answer_type == "choice":
        from selfaug_compiler.judges.labels import label_set

        labels = label_set(golds)
    items = []
    for row, meta, gold in zip(rows, metas, golds):
        tests = ""
        if answer_type == "code":
            from selfaug_compiler.judges.verdicts import code_tests

            statements, setup = code_tests(meta)
            tests = "\n\n".join(p for p in [setup, *statements] if p)
        # a conversation row is asked with its turns up to the last reply, which is its gold (augment/conversation.py)
        items.append(GenItem(str(row["key"]), conv.prompt_for(row, conv.question(row)), str(gold if gold is not None else ""),
                             tests=tests, extra={"response": conv.target(row), **({"labels": labels} if labels else {})}))
    bench = Benchmark("heldout", "generation", answer_type, items, ref)
    params = ctx.step.params
    return subset(bench, params.get("limit"), int(params.get("seed", 0)), int(params.get("max_new_tokens", 256)))


def step_benchmark(ctx: StepContext) -> Benchmark:
    """The step's benchmark, with ``eval.stop`` applied to generated replies."""
    return with_stop(_benchmark(ctx), ctx.step.params.get("stop"))


def _benchmark(ctx: StepContext) -> Benchmark:
    params = ctx.step.params
    name = params["benchmark"]
    common = {"limit": params.get("limit"), "seed": int(params.get("seed", 0)),
              "max_new_tokens": int(params.get("max_new_tokens", 256))}
    if name == "heldout":
        return heldout_benchmark(ctx)
    if is_lm_eval(name):  # lm-evaluation-harness task (evaluate/lm_eval_run.py)
        return load_benchmark(name, base_dir=ctx.recipe_dir, lm_eval=params.get("lm_eval"), **common)
    custom = params.get("custom")
    if custom:
        return load_benchmark(str(ctx.resolve_path(custom["path"])), bench_type=custom.get("type"),
                              answer_type=custom.get("answer_type"), display_name=name, **common)
    return load_benchmark(name, prompt=params.get("prompt"), **common)


def score_with_gold_loss(loaded: Any, bench: Benchmark, *, batch_size: int = 16, progress: Any = None):
    """Generation scoring plus the gold response's loss (nats/token), for in-domain data."""
    from selfaug_compiler.evaluate.generation import gold_loss

    _, items = run_benchmark(loaded, bench, batch_size=batch_size, progress=progress)
    losses = gold_loss(loaded, [i.prompt for i in bench.items], [i.extra.get("response") or i.answer
                                                                 for i in bench.items], progress=progress)
    for row, loss in zip(items, losses):
        row["gold_loss"] = loss
    return summarize(bench, items, {"gold_loss": sum(losses) / len(losses)}), items


def eval_batch_size(ctx: StepContext) -> int:
    """The replicate's own batch size (a content parameter), else the speed setting."""
    spec = ctx.step.params.get("replicate") or {}
    return int(spec.get("batch_size") or ctx.step.speed.get("eval_batch_size") or ctx.step.speed.get("batch_size") or 16)


def execute(ctx: StepContext) -> StepResult:
    if ctx.step.params.get("benchmark") == "style_retention":  # answers scored against task markers
        from selfaug_compiler.evaluate import style_step

        return style_step.execute(ctx)
    bench = replicate(with_backend(step_benchmark(ctx), ctx.step.params.get("backend")), ctx.step.params.get("replicate"))
    model = _model(ctx)
    batch_size = eval_batch_size(ctx)
    scorer = score_with_gold_loss if bench.name == "heldout" else None
    outcome: EvalOutcome = evaluate_cached(model, bench, ctx.store, batch_size=batch_size, progress=ctx.progress,
                                           scorer=scorer)
    metrics = dict(outcome.metrics, cached=outcome.cached, model_key=model.key(), fingerprint=bench.fingerprint)
    fp = model.key().rsplit(":", 1)[0]
    return StepResult(metrics=metrics, model_fingerprint=fp)

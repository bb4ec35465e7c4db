"""The ``report`` step: evaluate results -> report.json, report.html and the terminal table.

params:
    title:  the recipe name
    seed:   for the paired bootstrap
    evals:  [{"step": <evaluate step name>, "benchmark": name, "category": "retention" | "in_domain",
              "stage": 0 for the model before fine-tuning, k for the checkpoint after stage k}]
            When absent, derived from the input names ``eval.before.<bench>``,
            ``eval.after.<bench>`` and ``eval.stage<k>.<bench>``, with ``in_domain`` (a list
            of benchmark names, default ["heldout"]) deciding the category.
inputs: the evaluate steps. Per-item results come from the store (the result cache), keyed by
the ``model_key`` and ``fingerprint`` each evaluate step puts in its metrics. The model, recipe,
seed and training set (rows per source) come from the upstream train and mix steps' recorded
results (``report/context.py``) and go into ``meta.context``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from selfaug_compiler.errors import StepFailed
from selfaug_compiler.files import write_atomic
from selfaug_compiler.report.build import EvalEntry, build_report, items_by_id
from selfaug_compiler.report.context import run_context
from selfaug_compiler.runtime import StepContext, StepResult

_NAME = re.compile(r"^eval\.(before|after|stage(\d+))\.(.+)$")


def derive_evals(ctx: StepContext) -> list[dict[str, Any]]:
    in_domain = set(ctx.step.params.get("in_domain") or ["heldout"])
    out = []
    for name in ctx.step.inputs:
        m = _NAME.match(name)
        if not m:
            continue
        stage = 0 if m.group(1) == "before" else (1 if m.group(1) == "after" else int(m.group(2)))
        bench = ctx.inputs[name].metrics.get("benchmark") or m.group(3)
        out.append({"step": name, "benchmark": bench, "stage": stage,
                    "category": "in_domain" if bench in in_domain or m.group(3) in in_domain else "retention"})
    return out


def _entry(ctx: StepContext, spec: dict[str, Any]) -> EvalEntry:
    result = ctx.inputs.get(spec["step"])
    if result is None:
        raise StepFailed(ctx.step.name, f"input step {spec['step']} has no result")
    metrics = result.metrics
    items: dict[str, float] = {}
    if metrics.get("model_key") and metrics.get("fingerprint"):
        hit = ctx.store.get_eval(metrics["model_key"], metrics["fingerprint"])
        if hit is not None:
            stored_metrics, table = hit
            metrics = {**stored_metrics, **metrics}
            items = items_by_id(table.to_pylist())
    return EvalEntry(spec["benchmark"], spec.get("category", "retention"), int(spec.get("stage", 0)), metrics, items,
                     role=spec.get("role", "score"))


def _stored_rows(ctx: StepContext, spec: dict[str, Any]) -> list[dict[str, Any]]:
    metrics = ctx.inputs[spec["step"]].metrics
    hit = ctx.store.get_eval(metrics["model_key"], metrics["fingerprint"]) if metrics.get("model_key") else None
    return hit[1].to_pylist() if hit is not None else []


def _add_flip_examples(ctx: StepContext, report: dict[str, Any], specs: list[dict[str, Any]]) -> None:
    """``right_to_wrong`` on every retention row with a significant drop (report/flips.py)."""
    from selfaug_compiler.report.flips import dropped, right_to_wrong

    for row in report["benchmarks"]:
        mine = sorted((s for s in specs if s["benchmark"] == row["benchmark"]), key=lambda s: int(s.get("stage", 0)))
        if dropped(row) and len(mine) >= 2 and int(mine[0].get("stage", 0)) == 0:
            row["right_to_wrong"] = right_to_wrong(_stored_rows(ctx, mine[0]), _stored_rows(ctx, mine[-1]))


def _interpolation(ctx: StepContext, report: dict[str, Any], specs: list[dict[str, Any]],
                   rule: dict[str, Any]) -> dict[str, Any]:
    from selfaug_compiler.report.interpolation import interpolation_section

    scores: dict[float, dict[str, float | None]] = {}
    for spec in specs:
        acc = _entry(ctx, spec).metrics.get("acc")
        scores.setdefault(float(spec["alpha"]), {})[spec["benchmark"]] = None if acc is None else 100 * float(acc)
    return interpolation_section(report["benchmarks"], scores, float(rule["max_retention_drop_pts"]))


def _evaluated_dtype(entries: list[EvalEntry]) -> str | None:
    """The dtype the fine-tuned model was scored in (evaluate keys models as ``<fingerprint>:<dtype>``)."""
    keys = [str(e.metrics.get("model_key") or "") for e in sorted(entries, key=lambda e: -e.stage)]
    return next((k.rsplit(":", 1)[1] for k in keys if ":" in k), None)


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, str]:
    from selfaug_compiler.report.html import render_html

    out_dir = Path(out_dir)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    write_atomic(json_path, json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False, default=str))
    write_atomic(html_path, render_html(report))
    return {"report_json": str(json_path), "report_html": str(html_path)}


def print_report(report: dict[str, Any], files: dict[str, str] | None = None) -> None:
    from rich.console import Console

    from selfaug_compiler.report.context import context_lines
    from selfaug_compiler.report.table import forgetting_table

    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=150)
    for label, text in context_lines(report):
        console.print(f"{label}: {text}", highlight=False)
    console.print(forgetting_table(report))
    from selfaug_compiler.report.flips import flip_lines

    for line in flip_lines(report):
        console.print(line, highlight=False, markup=False)
    if report.get("interpolation"):
        from selfaug_compiler.report.interpolation import interpolation_lines

        console.print("\n".join(interpolation_lines(report["interpolation"])), highlight=False)
    if files:
        console.print(f"report: {files.get('report_html')}  (data: {files.get('report_json')})")


def execute(ctx: StepContext) -> StepResult:
    params = ctx.step.params
    specs = params.get("evals") or derive_evals(ctx)
    if not specs:
        raise StepFailed(ctx.step.name, "the report step has no evaluation results as input")
    alpha_specs = [spec for spec in specs if spec.get("alpha") is not None]  # interpolated models
    entries = [_entry(ctx, spec) for spec in specs if spec.get("alpha") is None]
    context = run_context(ctx.plan, ctx.step, ctx.store, recipe_dir=ctx.recipe_dir,
                          evaluated_dtype=_evaluated_dtype(entries))
    report = build_report(entries, title=params.get("title", ctx.plan.recipe_name), seed=int(params.get("seed", 0)),
                          meta={"recipe_hash": ctx.plan.recipe_hash, "step_id": ctx.step.id,
                                "stages": ctx.step.params.get("stages") or [], "context": context})
    kl = [r.metrics for r in ctx.inputs.values() if "kl_to_base" in r.metrics]  # diagnose.kl_to_base
    if kl:
        report["summary"]["kl_to_base"] = kl[0]["kl_to_base"]
        report["meta"]["kl_to_base"] = kl[0]
    _add_flip_examples(ctx, report, [s for s in specs if s.get("alpha") is None and s.get("role") is None])
    if alpha_specs and params.get("interpolate"):
        report["interpolation"] = _interpolation(ctx, report, alpha_specs, params["interpolate"])
    files = write_report(report, ctx.work_dir)
    return StepResult(metrics={"summary": report["summary"],
                               "benchmarks": {r["benchmark"]: {k: r.get(k) for k in ("before", "after", "delta",
                                                                                      "p_value", "significant")}
                                              for r in report["benchmarks"]}},
                      files=files)

"""Assemble a study's generated results section: tables, plots, commands, machine, wall times."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from selfaug_compiler.report.compare import compare_reports
from selfaug_compiler.report.table import compare_markdown
from selfaug_compiler.study import markdown as md
from selfaug_compiler.study.plots import continual_plot, delta_plot
from selfaug_compiler.study.results import arm_results, benchmark_order, noise_rows
from selfaug_compiler.study.run import StudyRun
from selfaug_compiler.study.spec import Study


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def results_section(study: Study, runs: list[StudyRun], results_path: Path, study_wall_s: float | None) -> str:
    spec = study.spec
    reports: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        reports.setdefault(run.key.label, []).append(run.report())
    single = [r for r in runs if not _is_continual(reports[r.key.label][0])]
    continual = [r for r in runs if _is_continual(reports[r.key.label][0])]
    arms = arm_results(single, spec.reference) if single else []
    benches = benchmark_order([reports[r.key.label][0] for r in single])
    figures = results_path.parent / (results_path.stem + "_files")
    out: list[str] = []

    out.append("## Methods on the same task and budget\n")
    out.append("Cells: mean Δ accuracy (after − before, points) over the seeds, then each seed's Δ; ▼ = a "
               "significant drop on that seed (paired McNemar p < 0.05 over items *and* larger than the noise "
               "floor), ▲ = a significant gain; ⬆k / ⬇k = better / worse than the reference arm "
               f"(`{spec.reference}`, same seed, paired test on the same items) in k seeds. *drops*: per seed, the "
               "retention benchmarks with a significant drop beyond the noise floor. *gold loss after*: the "
               "held-out gold replies' loss after fine-tuning (nats/token).\n")
    if arms:
        out.append(f"Base model: {md.before_row([reports[a.label][0] for a in arms], benches)}.\n")
        out.append(md.methods_table(arms, benches, spec.reference))
        plot = delta_plot(arms, [b for b, _ in benches], figures / "deltas.png")
        out.append(f"\n![Δ per benchmark and arm]({_rel(plot, results_path.parent)})\n")
    out.append(_arm_notes(study))

    comparison = first_seed_comparison(study, single)
    if comparison is not None:
        out.append(f"\n### `selfaug compare`, seed {min(r.key.seed for r in single)}\n")
        out.append("after (Δ vs before, ▼▲ significant vs before); *±k* = differs significantly from "
                   f"`{spec.reference}` by k points on the same items.\n")
        out.append(compare_markdown(comparison))

    noise = next((noise_rows(r.report()) for r in runs if noise_rows(r.report())), [])
    if noise:
        out.append("\n## Noise floor\n")
        out.append("The base model scored a second time with its items in reverse order and batch size 7 "
                   "(regular: 32): items whose pass/fail flips show how far numerics alone move a score. A drop "
                   "counts only when it exceeds the flip share.\n")
        out.append(md.noise_table(noise))

    if continual:
        c_arms = arm_results(continual, continual[0].key.label)
        out.append("\n## Continual sequence\n")
        out.append("FG (Luo et al.): mean over stages and retention benchmarks of the relative drop from the "
                   "base model, in %. Higher = more forgetting.\n")
        out.append(md.continual_table(c_arms, reports))
        firsts = {a.label: reports[a.label][0] for a in c_arms}
        plot = continual_plot(firsts, "style_retention", figures / "continual_style.png")
        if plot:
            out.append(f"\n![style retention across the continual sequence]({_rel(plot, results_path.parent)})\n")

    out.append(_reproduce(study, results_path))
    out.append(_times(runs, study_wall_s))
    return "\n".join(out)


def first_seed_comparison(study: Study, runs: list[StudyRun]) -> dict[str, Any] | None:
    """`selfaug compare` of the single-stage arms on their first seed, the reference first."""
    single = [r for r in runs if not _is_continual(r.report())]
    if not single:
        return None
    seed = min(r.key.seed for r in single)
    named = [(r.key.label, dict(r.report(), title=r.key.label)) for r in single if r.key.seed == seed]
    if len(named) < 2:
        return None
    return compare_reports(sorted(named, key=lambda kv: kv[0] != study.spec.reference))


def _is_continual(report: dict[str, Any]) -> bool:
    return len((report.get("meta") or {}).get("stages") or []) > 1


def _arm_notes(study: Study) -> str:
    lines = ["\n| arm | recipe | what changes |", "|---|---|---|"]
    for arm in study.spec.arms:
        lines.append(f"| {arm.label} | `{_rel(study.resolve(arm.recipe), study.folder.parent)}` | {arm.note or ''} |")
    return "\n".join(lines)


def _reproduce(study: Study, results_path: Path) -> str:
    root = results_path.parent.parent
    study_file = _rel(study.path, root)
    return "\n".join([
        "\n## Reproduce\n",
        "```bash",
        "make lab                                        # set-up, then the whole study (resumable)",
        f".venv/bin/selfaug study run {study_file}   # the same, after set-up",
        f".venv/bin/selfaug study run {study_file} --dry-run   # what is cached, what would run",
        ".venv/bin/selfaug run recipes/lab/sft.yaml --set seed=1 --store .selfaug/lab.duckdb   # one run of it",
        "```",
        "\nMachine:\n", *md.machine_lines()])


def _times(runs: list[StudyRun], study_wall_s: float | None) -> str:
    lines = ["\n## Wall times\n", "| run | compute from an empty store | this invocation |", "|---|---|---|"]
    seen: dict[str, float] = {}
    for run in runs:
        lines.append(f"| {run.key} | {run.compute_s / 60:.1f} min | {run.ran_s / 60:.1f} min |")
        seen.update(run.step_seconds)
    total = (f"\nEvery distinct step once (the study from an empty store, shared steps counted once): "
             f"**{sum(seen.values()) / 60:.1f} min**.")
    if study_wall_s is not None:
        total += f" This invocation took {study_wall_s / 60:.1f} min."
    return "\n".join([*lines, total])

"""Assemble a study's generated results section: tables, plots, commands, machine, wall times."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from selfaug_compiler.files import write_atomic
from selfaug_compiler.report.compare import compare_reports
from selfaug_compiler.report.html import render_compare_html
from selfaug_compiler.report.table import NOISE_MEANING, compare_markdown
from selfaug_compiler.study import markdown as md
from selfaug_compiler.study.frontier_md import frontier_section
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
    figures = md.figures_folder(results_path, spec.name)
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
        out.append(frontier_section([(r.key.label, r.report()) for r in single], figures, results_path.parent))
    out.append(_arm_notes(study))

    comparison = first_seed_comparison(study, single)
    if comparison is not None:
        out.append(f"\n### `selfaug compare`, seed {min(r.key.seed for r in single)}\n")
        out.append("after (Δ vs before, ▼▲ significant vs before); *±k* = differs significantly from "
                   f"`{spec.reference}` (the reference) by k points on the same items.")
        if all(_linkable(r.report_json, results_path) for r in single):
            page = write_atomic(figures / "compare.html", render_compare_html(comparison, figures / "compare.html"))
            out.append(f"The same table with links to each run's report: [compare.html]({_rel(page, results_path.parent)}).")
        out.append("")
        out.append(compare_markdown(comparison))

    noise = next((noise_rows(r.report()) for r in runs if noise_rows(r.report())), [])
    if noise:
        out.append("\n## Noise floor\n")
        out.append("The base model scored a second time with its items in reverse order and batch size 7 "
                   "(regular: 32): items whose pass/fail flips show how far numerics alone move a score. "
                   f"*{NOISE_MEANING}* (the same number as in each run's report and in `selfaug compare`).\n")
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

    out.append(_run_links(runs, results_path))
    out.append(_reproduce(study, runs))
    out.append(_times(runs, study_wall_s))
    return "\n".join(out)


def first_seed_comparison(study: Study, runs: list[StudyRun]) -> dict[str, Any] | None:
    """`selfaug compare` of the single-stage arms on their first seed, the reference first."""
    single = [r for r in runs if not _is_continual(r.report())]
    if not single:
        return None
    seed = min(r.key.seed for r in single)
    chosen = sorted((r for r in single if r.key.seed == seed), key=lambda r: r.key.label != study.spec.reference)
    if len(chosen) < 2:
        return None
    return compare_reports([(r.key.label, dict(r.report(), title=r.key.label)) for r in chosen],
                           reference_by="the study's `reference`", files=[r.report_json for r in chosen])


def _repository_of(path: Path) -> Path | None:
    """The nearest folder at or above ``path`` with a pyproject.toml or .git, if any."""
    for folder in [path, *path.parents]:
        if (folder / "pyproject.toml").is_file() or (folder / ".git").exists():
            return folder
    return None


def _linkable(report: Path, results_path: Path) -> bool:
    """Whether a results file may link to a run's report: yes when the results file is in no
    repository, or the report is in the same one. A results file in a repository (docs/results.md)
    is read elsewhere, where a link to a store outside the repository would be dead."""
    repo = _repository_of(results_path.resolve().parent)
    return repo is None or report.resolve().is_relative_to(repo)


def rewrite_hint(study: Study) -> str:
    """The command named in the section's begin marker: the Makefile target when there is one."""
    root = project_root(study)
    study_file = _rel(study.path, root)
    target = make_target(root, study_file)
    return f"`make {target}`" if target else f"`selfaug study run {study_file}`"


def _is_continual(report: dict[str, Any]) -> bool:
    return len((report.get("meta") or {}).get("stages") or []) > 1


def project_root(study: Study) -> Path:
    """The repository the study belongs to: the nearest folder above the study file with a
    pyproject.toml or .git (else the study folder's parent). Commands in results files are
    written relative to it, the folder `make` and the README's commands run from."""
    return _repository_of(study.folder) or study.folder.parent


def _arm_notes(study: Study) -> str:
    lines = ["\n| arm | recipe | what changes |", "|---|---|---|"]
    root = project_root(study)
    for arm in study.spec.arms:
        lines.append(f"| {arm.label} | `{_rel(study.resolve(arm.recipe), root)}` | {arm.note or ''} |")
    return "\n".join(lines)


def _run_links(runs: list[StudyRun], results_path: Path) -> str:
    """Every run's own report.html and report.json (written by the runs' report steps), linked
    where `_linkable`; else named by their path in the artifacts folder beside the store."""
    linkable = [_linkable(run.report_json, results_path) for run in runs]
    lines = ["\n## Each run's report\n"]
    if not all(linkable):
        lines.append("Reports not linked lie in the artifacts folder beside the store, outside this repository.\n")
    lines += ["| run | report.html | report.json |", "|---|---|---|"]
    for run, link in zip(runs, linkable):
        page = run.report_json.with_name("report.html")
        if not link:
            folder = run.report_json.parent.name
            lines.append(f"| {run.key} | `{folder}/{page.name}` | `{folder}/{run.report_json.name}` |")
            continue
        html_link = f"[report.html]({_rel(page, results_path.parent)})" if page.is_file() else "–"
        lines.append(f"| {run.key} | {html_link} | [report.json]({_rel(run.report_json, results_path.parent)}) |")
    return "\n".join(lines)


def make_target(root: Path, study_file: str) -> str | None:
    """The Makefile target whose recipe runs ``selfaug study run <study_file>``, if any."""
    makefile = root / "Makefile"
    if not makefile.is_file():
        return None
    target = None
    for line in makefile.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+):", line)
        if m:
            target = m.group(1)
        elif line.startswith("\t") and f"study run {study_file}" in line and target:
            return target
    return None


def _reproduce(study: Study, runs: list[StudyRun]) -> str:
    """Commands that work from the repository root (paths relative to it, not to the results file)."""
    root = project_root(study)
    study_file = _rel(study.path, root)
    target = make_target(root, study_file)
    ref = next((a for a in study.spec.arms if a.label == study.spec.reference), study.spec.arms[0])
    seed = min((r.key.seed for r in runs if r.key.label == ref.label), default=(ref.seeds or study.spec.seeds)[0])
    one_run = (f".venv/bin/selfaug run {_rel(study.resolve(ref.recipe), root)} --set seed={seed} "
               f"--store {_rel(study.resolve(study.spec.store), root)}")
    return "\n".join([
        "\n## Reproduce\n",
        "From the repository root:\n",
        "```bash",
        *([f"make {target}   # set-up, then the whole study (resumable)"] if target else []),
        f".venv/bin/selfaug study run {study_file}   # the study, after set-up",
        f".venv/bin/selfaug study run {study_file} --dry-run   # what is cached, what would run",
        f"{one_run}   # one run of it ({ref.label}, seed {seed})",
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

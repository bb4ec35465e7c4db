"""The generated section of a study's results file (Markdown), and writing it in place.

Each study's section sits between two marker comments that name the study, so several studies
can publish into one file (docs/results.md holds the lab and the frontier lab); text outside
them (the authors' reading of the results) is kept when a study regenerates its results.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any

from selfaug_compiler.report.table import NOISE_COLUMN, fmt, noise_cell
from selfaug_compiler.study.results import ArmResult, Cell


def _begin_prefix(study_name: str) -> str:
    """What finds a study's section: its begin line without the hint after it (which may change)."""
    return f"<!-- selfaug study {study_name}: generated section begins"


def markers(study_name: str, rewritten_by: str = "`selfaug study run`") -> tuple[str, str]:
    """(begin, end) comment lines around ``study_name``'s generated section."""
    return (f"{_begin_prefix(study_name)}; {rewritten_by} rewrites it -->",
            f"<!-- selfaug study {study_name}: generated section ends -->")


def figures_folder(results_path: Path, study_name: str) -> Path:
    """Where a study's plots go: ``<results stem>_files/<study>/`` beside the results file, so
    studies publishing into the same file do not overwrite each other's figures."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", study_name).strip(".-") or "study"
    return results_path.parent / (results_path.stem + "_files") / slug


def _stars(p: float | None) -> str:
    if p is None or p >= 0.05:
        return ""
    return "***" if p < 0.001 else ("**" if p < 0.01 else "*")


def _seed_marks(cell: Cell) -> str:
    """Per seed: Δ with ▼ (significant drop beyond noise) or ▲ (significant gain)."""
    parts = []
    for d, down, up in zip(cell.deltas, cell.sig_drop, cell.sig_gain):
        parts.append("–" if d is None else f"{d:+.0f}{'▼' if down else ('▲' if up else '')}")
    return " / ".join(parts)


def _vs_ref(cell: Cell) -> str:
    tests = [t for t in cell.vs_ref if t is not None]
    if not tests:
        return ""
    better = sum(1 for t in tests if t["significant"] and t["diff"] > 0)
    worse = sum(1 for t in tests if t["significant"] and t["diff"] < 0)
    marks = (f" ⬆{better}" if better else "") + (f" ⬇{worse}" if worse else "")
    return marks


def methods_table(arms: list[ArmResult], benches: list[tuple[str, str]], reference: str) -> str:
    head = ["arm", "seeds"] + [f"{b} Δ" + (" (in-domain)" if c == "in_domain" else "") for b, c in benches]
    head += ["retention mean Δ", "drops", "gold loss after", "compute / run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in arms:
        cells = [f"**{arm.label}**" if arm.label == reference else arm.label, ",".join(map(str, arm.seeds))]
        for bench, _ in benches:
            cell = arm.cells[bench]
            mean = cell.mean_delta
            cells.append("–" if mean is None else f"{mean:+.1f} ({_seed_marks(cell)}){_vs_ref(cell)}")
        means = [m for m in arm.retention_mean if m is not None]
        cells.append(f"{sum(means) / len(means):+.1f}" if means else "–")
        cells.append(" / ".join("–" if d is None else str(d) for d in arm.drops) or "–")
        losses = [after for _, after in arm.gold_loss if after is not None]
        cells.append(fmt(sum(losses) / len(losses), 2) if losses else "–")
        cells.append(f"{sum(arm.compute_s) / len(arm.compute_s) / 60:.1f} min" if arm.compute_s else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def before_row(reports: list[dict[str, Any]], benches: list[tuple[str, str]]) -> str:
    """The base model's scores (stage 0) per benchmark, from the first report holding each."""
    cells = []
    for bench, _ in benches:
        before = next((r.get("before") for rep in reports for r in rep["benchmarks"]
                       if r["benchmark"] == bench and r.get("before") is not None), None)
        cells.append(f"{bench} {fmt(before)}")
    return ", ".join(cells)


def noise_table(rows: list[dict[str, Any]]) -> str:
    """The noise floor per benchmark; its NOISE_COLUMN is the number the report and compare tables show."""
    lines = [f"| benchmark | items | flipped | {NOISE_COLUMN} | Δ between the two scorings |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['benchmark']} | {r['n']} | {r['flips']} | {noise_cell(r)} | {r['delta']:+.1f} |")
    return "\n".join(lines)


def continual_table(arms: list[ArmResult], reports: dict[str, list[dict[str, Any]]]) -> str:
    """Per continual arm: FG per seed and retention accuracy after each stage (first seed)."""
    lines = ["| arm | FG per seed (%) | retention accuracy after each stage (0 = base; first seed) |", "|---|---|---|"]
    for arm in arms:
        if not any(fg is not None for fg in arm.continual_fg):
            continue
        rep = reports[arm.label][0]
        stages = []
        for r in rep["benchmarks"]:
            if r["category"] == "retention":
                stages.append(f"{r['benchmark']}: " + " → ".join(fmt(a) for a in r["acc_by_stage"]))
        fgs = " / ".join(fmt(f, 2) for f in arm.continual_fg)
        lines.append(f"| {arm.label} | {fgs} | {'; '.join(stages)} |")
    return "\n".join(lines)


def machine_lines() -> list[str]:
    import os

    from selfaug_compiler.models.loading import cpu_has_fast_bf16

    lines = [f"- {platform.machine()} {platform.processor() or ''} · {os.cpu_count()} CPU cores · "
             f"Python {platform.python_version()} · {platform.system()} {platform.release()}"]
    try:
        import torch
        import transformers

        lines.append(f"- torch {torch.__version__}, transformers {transformers.__version__}; "
                     f"bf16 on this CPU: {'native (used)' if cpu_has_fast_bf16() else 'not native (fp32)'}")
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return lines


def replace_section(path: Path, section: str, title: str, study_name: str,
                    rewritten_by: str = "`selfaug study run`") -> None:
    """Write ``section`` between ``study_name``'s markers in ``path``: in place of its previous
    section, else appended; the file is created with ``title`` when absent. Other studies'
    sections and all text outside them are kept."""
    from selfaug_compiler.files import write_atomic

    begin, end = markers(study_name, rewritten_by)
    block = f"{begin}\n{section.strip()}\n{end}"
    if not path.is_file():
        write_atomic(path, f"# {title}\n\n{block}\n")
        return
    text = path.read_text(encoding="utf-8")
    start = text.find(_begin_prefix(study_name))
    stop = text.find(end, start) if start >= 0 else -1
    if start >= 0 and stop >= 0:
        write_atomic(path, text[:start] + block + text[stop + len(end):])
    else:
        write_atomic(path, text.rstrip() + "\n\n" + block + "\n")

"""A study's frontier section of results.md (issue 15.3/15.4): the learning-vs-forgetting picture
(PNG, ``report/frontier.py``), its points as a table with the KL to the base model, and the
Spearman correlation of that KL with the retention drop across arms and seeds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from selfaug_compiler.report.frontier import frontier, frontier_figure, point_label
from selfaug_compiler.study.results import kl_retention_correlation


def _cell(value: float | None, digits: int = 1, signed: bool = True) -> str:
    return "–" if value is None else (f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}")


def frontier_section(runs: list[tuple[str, dict[str, Any]]], figures: Path, results_dir: Path) -> str:
    """``runs``: (arm label, report) for every run of the study's single-task arms."""
    from selfaug_compiler.files import write_atomic
    from selfaug_compiler.report.html import png_bytes

    data = frontier(runs)
    if not data["means"]:
        return ""
    out = ["\n## Learning vs forgetting\n",
           "x: in-domain gain (points, mean over in-domain benchmarks), y: retention change (points, mean over "
           "retention benchmarks), per arm and interpolation alpha (`a=`); ★ / **bold** = the Pareto set (no "
           "other point gains more in-domain while keeping as much); small dots: seeds"
           + (f"; grey band: the noise floor (±{data['noise_band']:.1f} pts)" if data.get("noise_band") else "")
           + ". *KL to base*: mean per-token KL(base ‖ fine-tuned) on the task's held-out prompts, base-model "
           "samples (`diagnose.kl_to_base`), mean over seeds.\n"]
    if len(data["means"]) >= 2:
        plot = write_atomic(figures / "frontier.png", png_bytes(frontier_figure(data)))
        out.append(f"![learning vs forgetting]({os.path.relpath(plot, results_dir)})\n")
    out.append("| arm | seeds | in-domain gain | retention change | KL to base | Pareto |")
    out.append("|---|---|---|---|---|---|")
    for m in sorted(data["means"], key=lambda m: -m["x"]):
        kls = [p["kl_to_base"] for p in data["points"]
               if p["arm"] == m["arm"] and p["alpha"] == m["alpha"] and p["kl_to_base"] is not None]
        kl = sum(kls) / len(kls) if kls else None
        name = point_label(m)
        out.append(f"| {'**' + name + '**' if m['pareto'] else name} | {m['n']} | {_cell(m['x'])} | {_cell(m['y'])} | "
                   f"{_cell(kl, 4, signed=False)} | {'★' if m['pareto'] else ''} |")
    corr = kl_retention_correlation([rep for _, rep in runs])
    if corr["n"]:
        rho = "n/a (fewer than 3 runs or no spread)" if corr["rho"] is None else f"{corr['rho']:+.2f}"
        out.append(f"\nKL to base vs retention drop across {corr['n']} runs (arms × seeds): Spearman ρ = {rho} "
                   "(positive: runs that moved further from the base model forgot more).\n")
    return "\n".join(out)

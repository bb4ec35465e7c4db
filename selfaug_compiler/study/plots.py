"""A study's plots, written as PNG files next to its results file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfaug_compiler.report.html import new_figure, png_bytes
from selfaug_compiler.study.results import ArmResult

_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974"]


def _save(fig: Any, path: Path) -> Path:
    from selfaug_compiler.files import write_atomic

    return write_atomic(path, png_bytes(fig))


def delta_plot(arms: list[ArmResult], benches: list[str], path: Path) -> Path:
    """Mean Δ per arm and benchmark (bars) with each seed's Δ (dots)."""
    fig, ax = new_figure(max(7.0, 1.6 * len(benches) + 2), 4.0)
    width = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        color = _COLORS[i % len(_COLORS)]
        for j, bench in enumerate(benches):
            cell = arm.cells[bench]
            x = j - 0.4 + width * (i + 0.5)
            if cell.mean_delta is not None:
                ax.bar(x, cell.mean_delta, width=width, color=color, label=arm.label if j == 0 else None)
            ax.scatter([x] * sum(d is not None for d in cell.deltas), [d for d in cell.deltas if d is not None],
                       color="black", s=8, zorder=3)
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xticks(range(len(benches)), benches, rotation=15, ha="right")
    ax.set_ylabel("Δ accuracy after − before (points)")
    ax.set_title("Change per benchmark: bar = mean over seeds, dots = seeds")
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def continual_plot(reports: dict[str, dict[str, Any]], bench: str, path: Path) -> Path | None:
    """Accuracy of one benchmark after each stage, one line per continual arm (first seed)."""
    fig, ax = new_figure(6.0, 3.6)
    drawn = False
    for i, (label, rep) in enumerate(reports.items()):
        row = next((r for r in rep["benchmarks"] if r["benchmark"] == bench), None)
        if row is None or len(row["stages"]) < 3:
            continue
        ax.plot(row["stages"], row["acc_by_stage"], marker="o", color=_COLORS[i % len(_COLORS)], label=label)
        drawn = True
    if not drawn:
        import matplotlib.pyplot as plt

        plt.close(fig)
        return None
    stages = (rep.get("meta") or {}).get("stages") or []
    ax.set_xlabel("after stage (0 = base)" + (": " + " → ".join(stages) if stages else ""))
    ax.set_ylabel(f"{bench} accuracy (%)")
    ax.set_title(f"{bench} across the continual sequence")
    ax.legend(fontsize=8)
    return _save(fig, path)

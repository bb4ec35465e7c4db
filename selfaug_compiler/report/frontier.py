"""The learning-vs-forgetting frontier (issue 15.4): in-domain gain (x) against retention change (y)
for every run and interpolation alpha, per seed and as the mean per (arm, alpha); the Pareto set
of the means (no other point is at least as good on both axes and better on one); the noise floor
as a band around y = 0. Computed from ``report.json`` files only: ``selfaug compare`` (text/JSON/
HTML), report.html and a study's results (PNG) draw the same data.
"""

from __future__ import annotations

from typing import Any


def _context_seed(report: dict[str, Any]) -> Any:
    return ((report.get("meta") or {}).get("context") or {}).get("seed")


def report_points(arm: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """One point for the fine-tuned model (alpha 1) and one per interpolation alpha < 1."""
    s, seed = report.get("summary") or {}, _context_seed(report)
    points = [{"arm": arm, "alpha": 1.0, "seed": seed, "x": s.get("in_domain_gain"), "y": s.get("retention_mean_delta"),
               "kl_to_base": s.get("kl_to_base")}]
    for a in (report.get("interpolation") or {}).get("alphas", []):
        if a["alpha"] < 1.0:
            points.append({"arm": arm, "alpha": a["alpha"], "seed": seed, "x": a.get("in_domain_gain"),
                           "y": a.get("retention_mean_delta"), "kl_to_base": None})
    return points


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For each (x, y), maximizing both: True when no other point dominates it (>= on both, > on one)."""
    out = []
    for i, (x, y) in enumerate(points):
        out.append(not any((ox >= x and oy >= y) and (ox > x or oy > y)
                           for j, (ox, oy) in enumerate(points) if j != i))
    return out


def noise_band(reports: list[dict[str, Any]]) -> float | None:
    """Half-width of the band: the mean flip share (points) of the retention benchmarks' noise
    floors, over the runs that measured one (the largest change numerics alone produce)."""
    values = [r["noise"]["flip_pts"] for rep in reports for r in rep.get("benchmarks", [])
              if r.get("category") == "retention" and r.get("noise")]
    return sum(values) / len(values) if values else None


def frontier(runs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """``runs``: (arm label, report); several seeds of one arm share the label."""
    points = [p for arm, rep in runs for p in report_points(arm, rep)]
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for p in points:
        if p["x"] is not None and p["y"] is not None:
            groups.setdefault((p["arm"], p["alpha"]), []).append(p)
    means = [{"arm": arm, "alpha": alpha, "n": len(ps), "x": sum(p["x"] for p in ps) / len(ps),
              "y": sum(p["y"] for p in ps) / len(ps)} for (arm, alpha), ps in groups.items()]
    for m, on in zip(means, pareto([(m["x"], m["y"]) for m in means])):
        m["pareto"] = on
    return {"x": "in-domain gain (points)", "y": "retention mean change (points)", "points": points,
            "means": means, "noise_band": noise_band([rep for _, rep in runs])}


def point_label(m: dict[str, Any]) -> str:
    return m["arm"] if m["alpha"] == 1.0 else f"{m['arm']} a={m['alpha']:g}"


def frontier_figure(data: dict[str, Any]):
    """A matplotlib figure of ``frontier(...)``: seeds as small dots, means as markers (Pareto set
    as stars joined by a line), the noise floor as a grey band."""
    from selfaug_compiler.report.html import new_figure

    fig, ax = new_figure(6.5, 4.5)
    if data.get("noise_band"):
        ax.axhspan(-data["noise_band"], data["noise_band"], color="0.85", zorder=0,
                   label=f"noise floor ±{data['noise_band']:.1f} pts")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.axvline(0, color="gray", linewidth=0.8)
    arms = list(dict.fromkeys(m["arm"] for m in data["means"]))
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    for m in data["means"]:
        color = colors[arms.index(m["arm"]) % len(colors)]
        seeds = [p for p in data["points"] if p["arm"] == m["arm"] and p["alpha"] == m["alpha"] and p["x"] is not None]
        ax.scatter([p["x"] for p in seeds], [p["y"] for p in seeds], color=color, s=10, alpha=0.5, zorder=2)
        ax.scatter([m["x"]], [m["y"]], color=color, s=110 if m["pareto"] else 45,
                   marker="*" if m["pareto"] else ("o" if m["alpha"] == 1.0 else "D"), edgecolor="black", zorder=3)
        ax.annotate(point_label(m), (m["x"], m["y"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    front = sorted((m for m in data["means"] if m["pareto"]), key=lambda m: m["x"])
    if len(front) > 1:
        ax.plot([m["x"] for m in front], [m["y"] for m in front], color="black", linestyle="--", linewidth=0.8,
                label="Pareto set", zorder=1)
    ax.set_xlabel(data["x"])
    ax.set_ylabel(data["y"])
    ax.set_title("Learning vs forgetting: mean per arm (★ Pareto set), dots = seeds")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig


def frontier_lines(data: dict[str, Any]) -> list[str]:
    """Text for the terminal / Markdown: one line per mean point, the Pareto set marked."""
    if not data.get("means"):  # no run has both an in-domain and a retention change
        return []
    lines = [f"frontier ({data['x']} / {data['y']}; * = Pareto set"
             + (f"; noise floor ±{data['noise_band']:.1f} pts" if data.get("noise_band") else "") + "):"]
    for m in sorted(data["means"], key=lambda m: -m["x"]):
        lines.append(f"  {'*' if m['pareto'] else ' '} {point_label(m)}: {m['x']:+.1f} / {m['y']:+.1f}"
                     + (f" (n={m['n']})" if m["n"] > 1 else ""))
    return lines


def report_frontier(report: dict[str, Any]) -> dict[str, Any] | None:
    """One run's frontier (the fine-tuned model and its interpolation alphas), for report.html."""
    if not report.get("interpolation"):
        return None
    return frontier([(str(report.get("title") or "run"), report)])

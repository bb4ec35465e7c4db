"""A self-contained ``report.html``: what the run was (model, recipe and its hash, seed, training
set by source), tables, the in-domain gold loss explained, and matplotlib plots embedded as
base64 PNG; and ``compare.html``, which links the compared runs' reports to each other.

Plots: per-benchmark before/after bars with significance markers, the Δ chart (with the
bootstrap CI), and for a continual recipe the per-stage accuracy curve.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

from selfaug_compiler.report.context import context_lines
from selfaug_compiler.report.flips import flips_html
from selfaug_compiler.report.frontier import report_frontier
from selfaug_compiler.report.interpolation import interpolation_html
from selfaug_compiler.report.table import (COMPARE_LEGEND, GOLD_LOSS_MEANING, NOISE_COLUMN, NOISE_MEANING, REPORT_COLUMNS,
                                           compare_cell, fmt, gold_loss_parts, noise_cell, reference_line, report_cells,
                                           row_kind, significance_mark, summary_parts)


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes (and closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _png(fig: Any) -> str:
    return base64.b64encode(png_bytes(fig)).decode("ascii")


def new_figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def before_after_axes(rows: list[dict[str, Any]]):
    """(figure, axes) of the before/after bars. The y axis leaves room above the tallest bar for
    its significance mark, and marks are clipped to the axes: they never spill out of the plot."""
    fig, ax = new_figure(max(5.0, 1.1 * len(rows) + 2), 3.6)
    xs = range(len(rows))
    before = [r.get("before") or 0 for r in rows]
    after = [r.get("after") or 0 for r in rows]
    ax.bar([x - 0.2 for x in xs], before, width=0.4, label="before", color="#8da0cb")
    ax.bar([x + 0.2 for x in xs], after, width=0.4, label="after", color="#fc8d62")
    tops = [max(b, a) for b, a in zip(before, after)]
    for x, r, top in zip(xs, rows, tops):
        mark = significance_mark(r)
        if mark:
            ax.text(x, top + 1, mark, ha="center", va="bottom", fontsize=12, clip_on=True)
        if r.get("chance"):
            ax.hlines(r["chance"], x - 0.4, x + 0.4, colors="gray", linestyles="dotted")
    top = max(tops + [1.0]) * 1.2 + 5  # headroom for the marks (about 8 % of the height)
    ax.set_ylim(0, top)
    if top > 100:
        ax.set_yticks(range(0, 101, 20))  # no "120 %" tick above a percentage scale
    ax.set_xticks(list(xs), [r["benchmark"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Before / after fine-tuning (dotted: chance; * significant)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the plot, never over a mark
    return fig, ax


def before_after_plot(rows: list[dict[str, Any]]) -> str:
    fig, _ = before_after_axes(rows)
    return _png(fig)


def delta_plot(rows: list[dict[str, Any]]) -> str:
    fig, ax = new_figure(max(5.0, 0.9 * len(rows) + 2), 3.2)
    deltas = [r.get("delta") or 0 for r in rows]
    lows = [d - (r.get("ci_low") if r.get("ci_low") is not None else d) for d, r in zip(deltas, rows)]
    highs = [(r.get("ci_high") if r.get("ci_high") is not None else d) - d for d, r in zip(deltas, rows)]
    colors = ["#d62728" if d < 0 else "#2ca02c" for d in deltas]
    ax.bar(range(len(rows)), deltas, color=colors, yerr=[lows, highs], capsize=4)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rows)), [r["benchmark"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("Δ (points)")
    ax.set_title("Change after fine-tuning (95% paired bootstrap CI)")
    return _png(fig)


def stage_plot(rows: list[dict[str, Any]]) -> str:
    fig, ax = new_figure(6.0, 3.6)
    for r in rows:
        ax.plot(r["stages"], r["acc_by_stage"], marker="o", label=r["benchmark"])
    ax.set_xlabel("stage (0 = base model)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy across the continual sequence")
    ax.legend(fontsize=8)
    return _png(fig)


def _table_html(report: dict[str, Any]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in REPORT_COLUMNS) + "</tr>"]
    for r in report["benchmarks"]:
        out.append(f"<tr class='{row_kind(r) or ''}'>" + "".join(f"<td>{html.escape(c)}</td>" for c in report_cells(r))
                   + "</tr>")
    out.append("</table>")
    return "\n".join(out)


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}
tr.drop{background:#fde0dc}tr.gain{background:#e0f5e0}dl.about{display:grid;grid-template-columns:max-content auto;
gap:2px 1em}dl.about dt{font-weight:bold}dl.about dd{margin:0}"""


def _about_html(report: dict[str, Any]) -> str:
    lines = context_lines(report)
    if not lines:
        return ""
    return "<dl class='about'>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in lines) + "</dl>"


def _gold_loss_html(report: dict[str, Any]) -> str:
    parts = gold_loss_parts(report)
    if not parts:
        return ""
    return (f"<h2>In-domain gold loss</h2><p><b>{html.escape('; '.join(parts))}</b>.<br>"
            f"{html.escape(GOLD_LOSS_MEANING[0].upper() + GOLD_LOSS_MEANING[1:])}.</p>")


def render_html(report: dict[str, Any]) -> str:
    rows = [r for r in report["benchmarks"] if r.get("after") is not None]
    images = []
    if rows:
        images.append(("Before and after", before_after_plot(rows)))
        images.append(("Δ per benchmark", delta_plot(rows)))
        if any(len(r["stages"]) > 2 for r in rows):
            images.append(("Per-stage accuracy", stage_plot(rows)))
    s = report.get("summary", {})
    summary = [html.escape(part) for part in summary_parts(s)]
    if s.get("continual_fg") is not None:
        summary.append(f"Continual forgetting FG: <b>{fmt(s['continual_fg'], 2)} %</b>")
    body = "\n".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{b64}'>"
                     for t, b64 in images)
    noise = (f"<br>{html.escape(NOISE_MEANING)}."
             if any(r.get("noise") for r in report["benchmarks"]) else "")
    title = html.escape(str(report.get("title", "selfaug")))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>selfaug report: {title}</title>
<style>{_STYLE}</style></head>
<body><h1>Forgetting report: {title}</h1>
{_about_html(report)}
<p>{'<br>'.join(summary)}</p>
{_table_html(report)}
<p>sig: paired McNemar exact test on per-item accuracy (bootstrap CI where scores are not binary);
* p&lt;.05, ** p&lt;.01, *** p&lt;.001. Δ = after − before, in points; rel. change = Δ / before;
norm. change = Δ / (before − chance), the share of the above-chance ability gained (+) or lost (−).{noise}</p>
{_gold_loss_html(report)}
{flips_html(report)}
{interpolation_html(report)}
{frontier_html(report_frontier(report))}
{body}
</body></html>
"""


def frontier_html(data: dict[str, Any] | None) -> str:
    """The frontier picture (report/frontier.py) as an embedded PNG, when it has two points or more."""
    if not data or len(data.get("means") or []) < 2:
        return ""
    from selfaug_compiler.report.frontier import frontier_figure

    return (f"<h2>Learning vs forgetting</h2><img alt='frontier' src='data:image/png;base64,"
            f"{_png(frontier_figure(data))}'>")


def render_compare_html(comparison: dict[str, Any], out_path: Path) -> str:
    """``compare.html``: the comparison table, each run linked to its own report.html (relative
    to ``out_path``'s folder, so the pages move together)."""
    runs = comparison["runs"]
    links = []
    for i, (name, report_json) in enumerate(zip(runs, comparison.get("report_json") or [None] * len(runs))):
        page = Path(report_json).with_name("report.html") if report_json else None
        label = html.escape(name) + (" (reference)" if i == 0 else "")
        if page is not None and page.is_file():
            href = html.escape(os.path.relpath(page, out_path.parent))
            links.append(f"<li><a href='{href}'>{label}</a></li>")
        else:
            links.append(f"<li>{label} (no report.html)</li>")
    head = ["benchmark", "before", NOISE_COLUMN] + [n + (" (reference)" if i == 0 else "") for i, n in enumerate(runs)]
    table = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in comparison["benchmarks"]:
        cells = [row["benchmark"], fmt(row.get("before")), noise_cell(row.get("noise"))]
        cells += [compare_cell(cell) for cell in row["runs"]]
        table.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    table.append("</table>")
    noise = (f"<br>{html.escape(NOISE_MEANING)}" if any(r.get("noise") for r in comparison["benchmarks"]) else "")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>selfaug compare: {html.escape(', '.join(runs))}</title>
<style>{_STYLE}</style></head>
<body><h1>Runs compared</h1>
<p>{html.escape(reference_line(comparison))}</p>
<p>Each run's own report:</p><ul>{''.join(links)}</ul>
{chr(10).join(table)}
<p>{html.escape(COMPARE_LEGEND)}{noise}</p>
{frontier_html(comparison.get("frontier"))}
</body></html>
"""

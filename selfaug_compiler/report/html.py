"""A self-contained ``report.html``: tables plus matplotlib plots embedded as base64 PNG.

Plots: per-benchmark before/after bars with significance markers, the Δ chart (with the
bootstrap CI), and for a continual recipe the per-stage accuracy curve.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from selfaug_compiler.report.table import REPORT_COLUMNS, fmt, report_cells, row_kind, significance_mark, summary_parts


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def new_figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def before_after_plot(rows: list[dict[str, Any]]) -> str:
    fig, ax = new_figure(max(5.0, 1.1 * len(rows) + 2), 3.6)
    xs = range(len(rows))
    before = [r.get("before") or 0 for r in rows]
    after = [r.get("after") or 0 for r in rows]
    ax.bar([x - 0.2 for x in xs], before, width=0.4, label="before", color="#8da0cb")
    ax.bar([x + 0.2 for x in xs], after, width=0.4, label="after", color="#fc8d62")
    for x, r, top in zip(xs, rows, (max(b, a) for b, a in zip(before, after))):
        mark = significance_mark(r)
        if mark:
            ax.text(x, top + 1, mark, ha="center", va="bottom", fontsize=12)
        if r.get("chance"):
            ax.hlines(r["chance"], x - 0.4, x + 0.4, colors="gray", linestyles="dotted")
    ax.set_xticks(list(xs), [r["benchmark"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Before / after fine-tuning (dotted: chance; * significant)")
    ax.legend()
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
    title = html.escape(str(report.get("title", "selfaug")))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>selfaug report: {title}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
tr.drop{{background:#fde0dc}}tr.gain{{background:#e0f5e0}}</style></head>
<body><h1>Forgetting report: {title}</h1>
<p>{'<br>'.join(summary)}</p>
{_table_html(report)}
<p>sig: paired McNemar exact test on per-item accuracy (bootstrap CI where scores are not binary);
* p&lt;.05, ** p&lt;.01, *** p&lt;.001. Normalized drop = (before − after)/(before − chance).</p>
{body}
</body></html>
"""

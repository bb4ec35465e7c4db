"""Terminal tables (rich) for the forgetting report and for ``selfaug compare``."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, digits: int = 1, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def significance_mark(row: dict[str, Any]) -> str:
    p = row.get("p_value")
    if not row.get("significant"):
        return ""
    if p is not None and p < 0.001:
        return "***"
    if p is not None and p < 0.01:
        return "**"
    return "*"


def forgetting_table(report: dict[str, Any]):
    """A rich Table: one row per benchmark with before, after, Δ, drops and the paired test."""
    from rich.table import Table

    table = Table(title=f"Forgetting report: {report.get('title', '')}")
    for col in ("benchmark", "kind", "n", "before", "after", "Δ pts", "rel. drop %", "norm. drop", "95% CI Δ", "p", "sig"):
        table.add_column(col, justify="left" if col in ("benchmark", "kind") else "right")
    for r in report["benchmarks"]:
        style = "red" if r.get("significant") and (r.get("delta") or 0) < 0 else (
            "green" if r.get("significant") else None)
        ci = f"[{fmt(r.get('ci_low'))}, {fmt(r.get('ci_high'))}]" if r.get("ci_low") is not None else "–"
        p = r.get("p_value")
        table.add_row(r["benchmark"], r["category"].replace("_", "-"), str(r.get("n", "")), fmt(r.get("before")),
                      fmt(r.get("after")), fmt(r.get("delta"), signed=True), fmt(r.get("relative_drop_pct")),
                      fmt(r.get("normalized_drop"), 2), ci, "–" if p is None else f"{p:.3g}",
                      significance_mark(r), style=style)
    s = report.get("summary", {})
    caption = [f"retention mean Δ {fmt(s.get('retention_mean_delta'), signed=True)} pts",
               f"significant drops {s.get('retention_significant_drops', 0)}",
               f"in-domain gain {fmt(s.get('in_domain_gain'), signed=True)} pts"]
    for r in report["benchmarks"]:  # where accuracy sits at the floor, the gold loss shows the learning
        if r.get("gold_loss_before") is not None and r.get("gold_loss_after") is not None:
            caption.append(f"{r['benchmark']} gold loss {r['gold_loss_before']:.2f} → {r['gold_loss_after']:.2f} nats/token")
    if s.get("continual_fg") is not None:
        caption.append(f"continual FG {fmt(s['continual_fg'], 2)} %")
    table.caption = " · ".join(caption) + "   (sig: paired McNemar / bootstrap, * p<.05 ** p<.01 *** p<.001)"
    return table


def compare_table(comparison: dict[str, Any]):
    """Runs side by side: after-score (Δ vs its own before) per run; marks vs the first run."""
    from rich.table import Table

    runs = comparison["runs"]
    table = Table(title="Runs compared (reference: " + runs[0] + ")")
    table.add_column("benchmark")
    table.add_column("before", justify="right")
    for name in runs:
        table.add_column(name, justify="right")
    for row in comparison["benchmarks"]:
        cells = [row["benchmark"], fmt(row.get("before"))]
        for cell in row["runs"]:
            if cell is None:
                cells.append("–")
                continue
            mark = ""
            if cell.get("vs_reference") and cell["vs_reference"].get("significant"):
                mark = " *"
            cells.append(f"{fmt(cell.get('after'))} ({fmt(cell.get('delta'), signed=True)}){mark}")
        table.add_row(*cells)
    table.caption = "after (Δ vs before); * = differs from the reference run (paired test on the same items, p<.05)"
    return table

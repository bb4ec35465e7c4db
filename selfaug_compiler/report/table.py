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


REPORT_COLUMNS = ("benchmark", "kind", "n", "before", "after", "Δ pts", "rel. drop %", "norm. drop", "95% CI Δ",
                  "p", "sig", "noise ±")


def report_cells(r: dict[str, Any]) -> tuple[str, ...]:
    """One benchmark row of the report as the text of REPORT_COLUMNS (terminal and HTML)."""
    ci = f"[{fmt(r.get('ci_low'))}, {fmt(r.get('ci_high'))}]" if r.get("ci_low") is not None else "–"
    p = r.get("p_value")
    noise = r.get("noise")
    noise_txt = "–" if not noise else f"{noise['flip_pts']:.1f}" + ("" if r.get("beyond_noise", True) else " (within)")
    return (r["benchmark"], r["category"].replace("_", "-"), str(r.get("n", "")), fmt(r.get("before")),
            fmt(r.get("after")), fmt(r.get("delta"), signed=True), fmt(r.get("relative_drop_pct")),
            fmt(r.get("normalized_drop"), 2), ci, "–" if p is None else f"{p:.3g}", significance_mark(r), noise_txt)


def row_kind(r: dict[str, Any]) -> str | None:
    """"drop" / "gain" for a significant change, else None (row colour)."""
    if not r.get("significant"):
        return None
    return "drop" if (r.get("delta") or 0) < 0 else "gain"


def summary_parts(s: dict[str, Any]) -> list[str]:
    parts = [f"retention mean Δ {fmt(s.get('retention_mean_delta'), signed=True)} pts",
             f"significant drops {s.get('retention_significant_drops', 0)}"]
    if s.get("retention_drops_beyond_noise") is not None:
        parts.append(f"beyond the noise floor {s['retention_drops_beyond_noise']}")
    parts.append(f"in-domain gain {fmt(s.get('in_domain_gain'), signed=True)} pts")
    return parts


def forgetting_table(report: dict[str, Any]):
    """A rich Table: one row per benchmark with before, after, Δ, drops and the paired test."""
    from rich.table import Table

    table = Table(title=f"Forgetting report: {report.get('title', '')}")
    for col in REPORT_COLUMNS:
        table.add_column(col, justify="left" if col in ("benchmark", "kind") else "right")
    for r in report["benchmarks"]:
        table.add_row(*report_cells(r), style={"drop": "red", "gain": "green"}.get(row_kind(r) or ""))
    s = report.get("summary", {})
    caption = summary_parts(s)
    for r in report["benchmarks"]:  # where accuracy sits at the floor, the gold loss shows the learning
        if r.get("gold_loss_before") is not None and r.get("gold_loss_after") is not None:
            caption.append(f"{r['benchmark']} gold loss {r['gold_loss_before']:.2f} → {r['gold_loss_after']:.2f} nats/token")
    if s.get("continual_fg") is not None:
        caption.append(f"continual FG {fmt(s['continual_fg'], 2)} %")
    table.caption = " · ".join(caption) + ("   (sig: paired McNemar / bootstrap, * p<.05 ** p<.01 *** p<.001; "
                                           "noise ±: points of items that flip when the base model is scored "
                                           "again, where measured)")
    return table


def _change_mark(cell: dict[str, Any]) -> str:
    """▼ / ▲ for a run's significant change against its own before-score."""
    if not cell.get("significant_vs_before"):
        return ""
    return "▼" if (cell.get("delta") or 0) < 0 else "▲"


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
            cells.append(f"{fmt(cell.get('after'))} ({fmt(cell.get('delta'), signed=True)}{_change_mark(cell)}){mark}")
        table.add_row(*cells)
    table.caption = ("after (Δ vs before; ▼/▲ significant vs before); * = differs from the reference run "
                     "(paired test on the same items, p<.05)")
    return table


def compare_markdown(comparison: dict[str, Any]) -> str:
    """The comparison as a Markdown table, one row per run and one column per benchmark:
    after (Δ vs its own before), ▼/▲ for a significant change vs before, and * where the run
    differs significantly from the first (reference) run on the same items."""
    benches = comparison["benchmarks"]
    head = ["run"] + [f"{b['benchmark']} (before {fmt(b.get('before'))})" for b in benches]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, name in enumerate(comparison["runs"]):
        cells = [name]
        for b in benches:
            cell = b["runs"][i]
            if cell is None:
                cells.append("–")
                continue
            vs = cell.get("vs_reference") or {}
            mark = f" *{vs['diff']:+.0f}* " if vs.get("significant") else ""
            cells.append(f"{fmt(cell.get('after'))} ({fmt(cell.get('delta'), signed=True)}{_change_mark(cell)}){mark}".strip())
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

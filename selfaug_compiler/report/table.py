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


NOISE_COLUMN = "noise (flip pts)"
NOISE_MEANING = ("noise (flip pts): the share of items, in points, whose pass/fail flips when the base model is "
                 "scored a second time (other batches and item order); a change counts only when it is significant "
                 "and larger. \"within\" = this change is not beyond it")
GOLD_LOSS_MEANING = ("gold loss: the mean negative log-likelihood, in nats per token, that the model gives the "
                     "held-out gold replies; lower = the model finds the reference answers more likely, so a fall "
                     "shows what fine-tuning taught even where accuracy barely moves")
REPORT_COLUMNS = ("benchmark", "kind", "n", "before", "after", "Δ pts", "rel. change %", "norm. change", "95% CI Δ",
                  "p", "sig", NOISE_COLUMN)


def noise_cell(noise: dict[str, Any] | None, beyond: bool | None = None) -> str:
    """The NOISE_COLUMN text: the flip share in points, "(within)" when the change is not beyond it."""
    if not noise:
        return "–"
    return f"{noise['flip_pts']:.1f}" + (" (within)" if beyond is False else "")


def _change(r: dict[str, Any], key: str, old_key: str) -> float | None:
    """A signed change; reports before format 2 stored it as a drop (the opposite sign)."""
    if key in r:
        return r[key]
    old = r.get(old_key)
    return None if old is None else -old


def report_cells(r: dict[str, Any]) -> tuple[str, ...]:
    """One benchmark row of the report as the text of REPORT_COLUMNS (terminal and HTML)."""
    ci = f"[{fmt(r.get('ci_low'))}, {fmt(r.get('ci_high'))}]" if r.get("ci_low") is not None else "–"
    p = r.get("p_value")
    return (r["benchmark"], r["category"].replace("_", "-"), str(r.get("n", "")), fmt(r.get("before")),
            fmt(r.get("after")), fmt(r.get("delta"), signed=True),
            fmt(_change(r, "relative_change_pct", "relative_drop_pct"), signed=True),
            fmt(_change(r, "normalized_change", "normalized_drop"), 2, signed=True), ci,
            "–" if p is None else f"{p:.3g}", significance_mark(r), noise_cell(r.get("noise"), r.get("beyond_noise")))


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
    if s.get("kl_to_base") is not None:  # diagnose.kl_to_base (evaluate/kl_diag.py)
        parts.append(f"KL to base {s['kl_to_base']:.4f} nats/token")
    return parts


def gold_loss_parts(report: dict[str, Any]) -> list[str]:
    """``heldout gold loss 1.50 → 0.90 nats/token`` per benchmark that measured it."""
    return [f"{r['benchmark']} gold loss {r['gold_loss_before']:.2f} → {r['gold_loss_after']:.2f} nats/token"
            for r in report["benchmarks"]
            if r.get("gold_loss_before") is not None and r.get("gold_loss_after") is not None]


def forgetting_table(report: dict[str, Any]):
    """A rich Table: one row per benchmark with before, after, Δ, drops and the paired test."""
    from rich.table import Table

    table = Table(title=f"Forgetting report: {report.get('title', '')}")
    for col in REPORT_COLUMNS:
        table.add_column(col, justify="left" if col in ("benchmark", "kind") else "right")
    for r in report["benchmarks"]:
        table.add_row(*report_cells(r), style={"drop": "red", "gain": "green"}.get(row_kind(r) or ""))
    s = report.get("summary", {})
    caption = summary_parts(s) + gold_loss_parts(report)
    if s.get("continual_fg") is not None:
        caption.append(f"continual FG {fmt(s['continual_fg'], 2)} %")
    notes = ["sig: paired McNemar / bootstrap, * p<.05 ** p<.01 *** p<.001",
             "rel. change = Δ / before; norm. change = Δ / (before − chance); negative = lost"]
    if any(r.get("noise") for r in report["benchmarks"]):
        notes.append(NOISE_MEANING)
    if gold_loss_parts(report):
        notes.append(GOLD_LOSS_MEANING)
    table.caption = " · ".join(caption) + "\n" + "\n".join(notes)
    return table


def _change_mark(cell: dict[str, Any]) -> str:
    """▼ / ▲ for a run's significant change against its own before-score."""
    if not cell.get("significant_vs_before"):
        return ""
    return "▼" if (cell.get("delta") or 0) < 0 else "▲"


def reference_line(comparison: dict[str, Any]) -> str:
    """Which run the others are tested against, and how it was chosen."""
    how = comparison.get("reference_by") or "first run given"
    hint = "" if how == "--reference" else "; choose another with --reference"
    return f"reference: {comparison['runs'][0]} ({how}{hint})"


def compare_cell(cell: dict[str, Any] | None, *, markdown: bool = False) -> str:
    """after (Δ vs before, ▼/▲), then the difference from the reference where significant."""
    if cell is None:
        return "–"
    vs = cell.get("vs_reference") or {}
    text = f"{fmt(cell.get('after'))} ({fmt(cell.get('delta'), signed=True)}{_change_mark(cell)})"
    if vs.get("significant"):
        text += f" *{vs['diff']:+.0f}*" if markdown else f" *{vs['diff']:+.0f}"
    return text


COMPARE_LEGEND = ("after (Δ vs its own before; ▼/▲ significant vs before); *±k = differs from the reference run "
                  "by k points (paired test on the same items, p<.05)")


def compare_table(comparison: dict[str, Any]):
    """Runs side by side: after-score (Δ vs its own before) per run; marks vs the reference (first) run."""
    from rich.table import Table

    runs = comparison["runs"]
    table = Table(title=f"Runs compared (reference: {runs[0]})")
    table.add_column("benchmark")
    table.add_column("before", justify="right")
    table.add_column(NOISE_COLUMN, justify="right")
    for i, name in enumerate(runs):
        table.add_column(name + (" (reference)" if i == 0 else ""), justify="right")
    for row in comparison["benchmarks"]:
        table.add_row(row["benchmark"], fmt(row.get("before")), noise_cell(row.get("noise")),
                      *(compare_cell(cell) for cell in row["runs"]))
    table.caption = COMPARE_LEGEND + ("\n" + NOISE_MEANING if any(r.get("noise") for r in comparison["benchmarks"])
                                      else "")
    return table


def compare_markdown(comparison: dict[str, Any]) -> str:
    """The comparison as a Markdown table, one row per run and one column per benchmark:
    after (Δ vs its own before), ▼/▲ for a significant change vs before, and *±k* where the run
    differs significantly from the reference run (the first row) on the same items."""
    benches = comparison["benchmarks"]
    head = ["run"] + [f"{b['benchmark']} (before {fmt(b.get('before'))}"
                      + (f", {NOISE_COLUMN} {noise_cell(b['noise'])}" if b.get("noise") else "") + ")" for b in benches]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, name in enumerate(comparison["runs"]):
        cells = [name + (" (reference)" if i == 0 else "")]
        cells += [compare_cell(b["runs"][i], markdown=True) for b in benches]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

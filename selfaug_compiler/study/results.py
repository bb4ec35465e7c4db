"""A study's runs as tables: per arm and benchmark, Δ over seeds and tests against the reference.

Everything here is computed from the runs' ``report.json`` files (per-item scores included), so
the tables are regenerated exactly from a finished study without touching a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from selfaug_compiler.evaluate.forgetting import compare_items
from selfaug_compiler.report.compare import after_items


@dataclass
class Cell:
    """One arm on one benchmark: a value per seed, each with its paired test."""

    deltas: list[float | None] = field(default_factory=list)  # after - before, points
    afters: list[float | None] = field(default_factory=list)
    sig_drop: list[bool] = field(default_factory=list)  # significant drop vs before, beyond noise when measured
    sig_gain: list[bool] = field(default_factory=list)
    vs_ref: list[dict[str, Any] | None] = field(default_factory=list)  # paired test vs the reference, same seed

    @property
    def mean_delta(self) -> float | None:
        vals = [d for d in self.deltas if d is not None]
        return sum(vals) / len(vals) if vals else None

    @property
    def mean_after(self) -> float | None:
        vals = [d for d in self.afters if d is not None]
        return sum(vals) / len(vals) if vals else None


@dataclass
class ArmResult:
    label: str
    seeds: list[int]
    cells: dict[str, Cell]
    gold_loss: list[tuple[float | None, float | None]]  # (before, after) per seed, first in-domain benchmark
    continual_fg: list[float | None]
    compute_s: list[float]
    retention_mean: list[float | None] = field(default_factory=list)  # mean Δ over retention benchmarks
    drops: list[int | None] = field(default_factory=list)  # significant drops (beyond noise where measured)


def _row(report: dict[str, Any], bench: str) -> dict[str, Any] | None:
    return next((r for r in report["benchmarks"] if r["benchmark"] == bench), None)


def benchmark_order(reports: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(benchmark, category) in first-seen order, in-domain first."""
    seen: dict[str, str] = {}
    for rep in reports:
        for r in rep["benchmarks"]:
            seen.setdefault(r["benchmark"], r["category"])
    return sorted(seen.items(), key=lambda kv: (kv[1] != "in_domain",))


def _drop_counts(row: dict[str, Any]) -> bool:
    """A significant drop, and beyond the noise floor where one was measured."""
    return bool(row.get("significant")) and (row.get("delta") or 0) < 0 and row.get("beyond_noise", True)


def arm_results(runs: list[Any], reference: str, seed: int = 0) -> list[ArmResult]:
    """Per arm (in study order): cells per benchmark over its seeds; ``runs`` are StudyRuns."""
    reports = {(r.key.label, r.key.seed): r.report() for r in runs}
    benches = benchmark_order(list(reports.values()))
    labels = list(dict.fromkeys(r.key.label for r in runs))
    out = []
    for label in labels:
        mine = [r for r in runs if r.key.label == label]
        cells: dict[str, Cell] = {b: Cell() for b, _ in benches}
        gold_loss, fg = [], []
        for run in mine:
            rep, ref = reports[(label, run.key.seed)], reports.get((reference, run.key.seed))
            for bench, _ in benches:
                row, cell = _row(rep, bench), cells[bench]
                cell.deltas.append(row.get("delta") if row else None)
                cell.afters.append(row.get("after") if row else None)
                cell.sig_drop.append(bool(row) and _drop_counts(row))
                cell.sig_gain.append(bool(row) and bool(row.get("significant")) and (row.get("delta") or 0) > 0)
                cell.vs_ref.append(_vs_reference(row, _row(ref, bench) if ref and label != reference else None, seed))
            loss_row = next((r for r in rep["benchmarks"] if r.get("gold_loss_before") is not None), None)
            gold_loss.append((loss_row["gold_loss_before"], loss_row["gold_loss_after"]) if loss_row else (None, None))
            fg.append(rep.get("summary", {}).get("continual_fg"))
        summaries = [reports[(label, r.key.seed)].get("summary", {}) for r in mine]
        out.append(ArmResult(label, [r.key.seed for r in mine], cells, gold_loss, fg, [r.compute_s for r in mine],
                             [s.get("retention_mean_delta") for s in summaries],
                             [s.get("retention_drops_beyond_noise", s.get("retention_significant_drops"))
                              for s in summaries]))
    return out


def _vs_reference(row: dict[str, Any] | None, ref_row: dict[str, Any] | None, seed: int) -> dict[str, Any] | None:
    if not row or not ref_row or row.get("fingerprint") != ref_row.get("fingerprint"):
        return None
    a, b = after_items(ref_row), after_items(row)
    if not a or not b:
        return None
    cmp = compare_items(a, b, seed=seed)
    return {"diff": cmp.delta, "p_value": cmp.p_value, "significant": cmp.significant}


def noise_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The noise floor each benchmark of a report measured (base model scored twice)."""
    return [{"benchmark": r["benchmark"], **r["noise"]} for r in report["benchmarks"] if r.get("noise")]


def _ranks(values: list[float]) -> list[float]:
    """Ranks 1..n, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (Pearson on tie-averaged ranks); None under 3 pairs or a constant side."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if sxx == 0 or syy == 0 else sxy / (sxx * syy) ** 0.5


def kl_retention_correlation(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Across every run (arms x seeds) that measured ``summary.kl_to_base``: Spearman's rho between
    the KL to the base model and the retention drop (- retention mean change): positive when runs
    that moved further from the base forgot more (RL's Razor)."""
    pairs = [(s["kl_to_base"], -s["retention_mean_delta"]) for s in (r.get("summary") or {} for r in reports)
             if s.get("kl_to_base") is not None and s.get("retention_mean_delta") is not None]
    return {"n": len(pairs), "rho": spearman([p[0] for p in pairs], [p[1] for p in pairs])}

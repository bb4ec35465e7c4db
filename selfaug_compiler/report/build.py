"""The forgetting report as data (``report.json``): per benchmark, before/after and paired tests.

Input: evaluation results, each one (benchmark, category, stage, metrics, per-item scores).
Stage 0 is the model before fine-tuning; stages 1..N the checkpoints after each stage (one
stage for a plain recipe). "after" is the last stage. The primary metric is ``acc`` (binary per
item, so McNemar applies); ``acc_norm`` is shown beside it where the benchmark defines it.
Per-item scores are kept in the file so ``selfaug compare`` can test runs against each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from selfaug_compiler.evaluate.forgetting import compare_items, continual_forgetting

REPORT_FORMAT = "selfaug-report/2"  # 2: relative_change_pct / normalized_change (signed like Δ), meta.context
CATEGORIES = ("in_domain", "retention")


@dataclass
class EvalEntry:
    benchmark: str
    category: str  # "in_domain" | "retention"
    stage: int  # 0 = before fine-tuning
    metrics: dict[str, Any]
    items: dict[str, float] = field(default_factory=dict)  # item id -> acc
    role: str = "score"  # "noise": a second scoring of the base model (the noise floor)


def items_by_id(rows: list[dict[str, Any]], metric: str = "acc") -> dict[str, float]:
    return {str(r["id"]): float(r[metric]) for r in rows if metric in r and r[metric] is not None}


def noise_floor(base: dict[str, float], again: dict[str, float]) -> dict[str, Any] | None:
    """How far a second scoring of the same model moves: the items whose score flipped (in
    points: the largest Δ numerics alone could produce) and the Δ between the two scorings."""
    ids = [i for i in base if i in again]
    if not ids:
        return None
    flips = sum(1 for i in ids if base[i] != again[i])
    delta = 100 * (sum(again[i] for i in ids) - sum(base[i] for i in ids)) / len(ids)
    return {"n": len(ids), "flips": flips, "flip_pts": 100 * flips / len(ids), "delta": delta}


def _benchmark_row(name: str, entries: list[EvalEntry], seed: int, noise: EvalEntry | None = None) -> dict[str, Any]:
    by_stage = {e.stage: e for e in entries}
    stages = sorted(by_stage)
    first, last = by_stage[stages[0]], by_stage[stages[-1]]
    chance = float(first.metrics.get("chance") or 0.0)
    row: dict[str, Any] = {
        "benchmark": name, "category": first.category, "chance": 100 * chance,
        "fingerprint": first.metrics.get("fingerprint"), "stages": stages,
        "acc_by_stage": [_pct(by_stage[s].metrics.get("acc")) for s in stages],
        "acc_norm_before": _pct(first.metrics.get("acc_norm")), "acc_norm_after": _pct(last.metrics.get("acc_norm")),
        "gold_loss_before": first.metrics.get("gold_loss"), "gold_loss_after": last.metrics.get("gold_loss"),
        "items": {"ids": list(first.items), "by_stage": {str(s): by_stage[s].items for s in stages}},
    }
    if len(stages) >= 2 and first.items and last.items:
        cmp = compare_items(first.items, last.items, chance=chance, seed=seed).to_dict()
        cmp["test"] = "mcnemar" if cmp["mcnemar"] else "bootstrap"
        # Signed like Δ (a gain is positive): a "drop" field would read −12 % for a gain.
        cmp["relative_change_pct"] = _negated(cmp.pop("relative_drop_pct"))
        cmp["normalized_change"] = _negated(cmp.pop("normalized_drop"))
        row.update(cmp)
    else:
        row.update({"n": len(first.items), "before": _pct(first.metrics.get("acc")), "after": None, "delta": None,
                    "significant": False, "p_value": None})
    if noise is not None and first.stage == 0:
        row["noise"] = noise_floor(first.items, noise.items)
        if row["noise"] is not None and row.get("delta") is not None:
            row["beyond_noise"] = bool(row.get("significant")) and abs(row["delta"]) > row["noise"]["flip_pts"]
    return row


def _negated(value: float | None) -> float | None:
    return None if value is None else (0.0 if value == 0 else -value)


def _pct(value: Any) -> float | None:
    return None if value is None else 100 * float(value)


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def build_report(entries: list[EvalEntry], *, title: str = "selfaug", seed: int = 0,
                 meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """report.json content from evaluation entries."""
    names: list[str] = []
    for e in entries:
        if e.benchmark not in names:
            names.append(e.benchmark)
    noise = {e.benchmark: e for e in entries if e.role == "noise"}
    scored = [e for e in entries if e.role != "noise"]
    rows = [_benchmark_row(n, [e for e in scored if e.benchmark == n], seed, noise.get(n)) for n in names
            if any(e.benchmark == n for e in scored)]
    rows.sort(key=lambda r: (CATEGORIES.index(r["category"]) if r["category"] in CATEGORIES else 9))
    retention = [r for r in rows if r["category"] == "retention"]
    in_domain = [r for r in rows if r["category"] == "in_domain"]
    summary = {
        "retention_mean_delta": _mean([r.get("delta") for r in retention]),
        "retention_significant_drops": sum(1 for r in retention if r.get("significant") and (r.get("delta") or 0) < 0),
        "retention_drops_beyond_noise": (sum(1 for r in retention if r.get("beyond_noise") and (r.get("delta") or 0) < 0)
                                         if any("noise" in r for r in retention) else None),
        "in_domain_gain": _mean([r.get("delta") for r in in_domain]),
        "continual_fg": _continual(retention),
    }
    return {"format": REPORT_FORMAT, "title": title, "meta": meta or {}, "summary": summary, "benchmarks": rows}


def _continual(retention: list[dict[str, Any]]) -> float | None:
    """Luo et al. FG over retention benchmarks, for a continual recipe (two or more checkpoints)."""
    if not retention:
        return None
    n_stages = max(max(r["stages"]) for r in retention)
    if n_stages < 2:
        return None
    r0 = {r["benchmark"]: r["acc_by_stage"][0] for r in retention if r["stages"][0] == 0}
    checkpoints = []
    for m in range(1, n_stages + 1):
        checkpoints.append({r["benchmark"]: r["acc_by_stage"][r["stages"].index(m)]
                            for r in retention if m in r["stages"]})
    return continual_forgetting(r0, checkpoints)

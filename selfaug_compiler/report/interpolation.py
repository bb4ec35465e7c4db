"""The report's ``interpolation`` section (issue 15.1): in-domain gain and retention per alpha, and
the alpha the recipe's rule picks.

Rule (``interpolate.select``): an alpha qualifies when every retention benchmark's change from the
base model is at least ``-max_retention_drop_pts`` points; among those, the one with the best
mean in-domain change is picked (ties: the smaller alpha, the one nearer the base model). Alpha 1
is the fine-tuned model (the report's own ``after`` column). Without in-domain benchmarks the
largest qualifying alpha is picked.
"""

from __future__ import annotations

from typing import Any


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def interpolation_section(rows: list[dict[str, Any]], alpha_scores: dict[float, dict[str, float | None]],
                          max_drop: float) -> dict[str, Any]:
    """``rows``: the report's benchmark rows (``before``, ``after`` in points, ``category``);
    ``alpha_scores``: alpha -> benchmark -> score of theta_alpha in points."""
    before = {r["benchmark"]: r.get("before") for r in rows}
    category = {r["benchmark"]: r.get("category") for r in rows}
    scores = {**{a: dict(s) for a, s in alpha_scores.items()}, 1.0: {r["benchmark"]: r.get("after") for r in rows}}
    per_alpha = []
    for alpha in sorted(scores):
        benches = {}
        for name, score in scores[alpha].items():
            if name not in before:
                continue
            delta = None if score is None or before[name] is None else score - before[name]
            benches[name] = {"score": score, "delta": delta, "category": category[name]}
        retention = [b["delta"] for b in benches.values() if b["category"] == "retention"]
        in_domain = _mean([b["delta"] for b in benches.values() if b["category"] == "in_domain"])
        measured = [(b["delta"], name) for name, b in benches.items()
                    if b["category"] == "retention" and b["delta"] is not None]
        worst, worst_name = min(measured) if measured else (None, None)  # ties: the first name in order
        qualifies = all(d is not None and d >= -max_drop for d in retention)
        per_alpha.append({"alpha": alpha, "in_domain_gain": in_domain, "retention_mean_delta": _mean(retention),
                          "retention_worst_delta": worst, "retention_worst_benchmark": worst_name,
                          "qualifies": qualifies, "benchmarks": benches})
    picked, why = pick(per_alpha, max_drop)
    return {"rule": {"max_retention_drop_pts": max_drop}, "alphas": per_alpha, "picked": picked, "why": why}


def pick(per_alpha: list[dict[str, Any]], max_drop: float) -> tuple[float | None, str]:
    ok = [a for a in per_alpha if a["qualifies"]]
    if not ok:
        worst = ", ".join(f"a={a['alpha']:g}: {_worst(a)}" for a in per_alpha)
        return None, (f"no alpha keeps every retention benchmark within {max_drop:g} pts of the base model "
                      f"(worst change per alpha: {worst})")
    if all(a["in_domain_gain"] is None for a in ok):
        best = max(ok, key=lambda a: a["alpha"])
        return best["alpha"], (f"alpha {best['alpha']:g}: the largest alpha whose retention stays within "
                               f"{max_drop:g} pts (no in-domain benchmark)")
    best = max(ok, key=lambda a: (a["in_domain_gain"] if a["in_domain_gain"] is not None else float("-inf"),
                                  -a["alpha"]))
    return best["alpha"], (f"alpha {best['alpha']:g}: best in-domain change ({_fmt(best['in_domain_gain'])} pts) "
                           f"among the alphas whose every retention benchmark stays within {max_drop:g} pts "
                           f"(worst {_worst(best)})")


def _worst(alpha: dict[str, Any]) -> str:
    """The worst retention change of one alpha, with the benchmark it came from."""
    name = alpha.get("retention_worst_benchmark")
    return _fmt(alpha["retention_worst_delta"]) + (f" {name}" if name else "")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}"


def interpolation_lines(section: dict[str, Any]) -> list[str]:
    """Plain lines for the terminal and Markdown: one per alpha, then the pick."""
    lines = ["interpolation (alpha: in-domain change / worst retention change, pts):"]
    for a in section["alphas"]:
        mark = " *" if a["alpha"] == section.get("picked") else ""
        lines.append(f"  alpha {a['alpha']:g}: in-domain {_fmt(a['in_domain_gain'])} / retention "
                     f"{_worst(a)}{'' if a['qualifies'] else ' (beyond tolerance)'}{mark}")
    lines.append(f"  picked: {section['why']}")
    return lines


def interpolation_html(report: dict[str, Any]) -> str:
    """The section of report.html: a table of alphas (the picked one in bold) and the reason."""
    import html

    section = report.get("interpolation")
    if not section:
        return ""
    rows = ["<table><tr><th>alpha</th><th>in-domain Δ (pts)</th><th>retention mean Δ</th>"
            "<th>worst retention Δ</th><th>within tolerance</th></tr>"]
    for a in section["alphas"]:
        cells = [f"{a['alpha']:g}", _fmt(a["in_domain_gain"]), _fmt(a["retention_mean_delta"]),
                 _worst(a), "yes" if a["qualifies"] else "no"]
        tag = ("<b>", "</b>") if a["alpha"] == section.get("picked") else ("", "")
        rows.append("<tr>" + "".join(f"<td>{tag[0]}{html.escape(c)}{tag[1]}</td>" for c in cells) + "</tr>")
    rows.append("</table>")
    return (f"<h2>Weight interpolation</h2><p>theta = (1 − alpha)·base + alpha·fine-tuned; alpha 1 is the "
            f"fine-tuned model.</p>{''.join(rows)}<p>{html.escape(section['why'])}</p>")

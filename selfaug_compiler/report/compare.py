"""``selfaug compare``: several runs side by side, with paired tests against the first run.

A run is a ``report.json`` path (or a folder holding one) or a run id recorded in the store
(its ``report`` step's result names the file). Two runs are compared on the items both scored
on the same benchmark fingerprint: McNemar on the per-item accuracy after fine-tuning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.evaluate.forgetting import compare_items


def load_report(ref: str, store_path: str | None = None) -> tuple[str, dict[str, Any]]:
    """(display name, report) for a report.json path, a folder with one, or a run id."""
    path = Path(ref)
    if path.is_dir():
        path = path / "report.json"
    if path.is_file():
        try:
            return (path.parent.name if path.name == "report.json" else path.stem), json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SelfaugError(f"{path} is not valid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
    report_file = _report_of_run(ref, store_path)
    return ref, json.loads(Path(report_file).read_text())


def _report_of_run(run_id: str, store_path: str | None) -> str:
    from selfaug_compiler.store import open_store

    with open_store(store_path, read_only=True) as store:
        steps = store.run_steps(run_id)
    for step in reversed(steps):
        files = (step.get("result") or {}).get("files") or {}
        if files.get("report_json") and Path(files["report_json"]).is_file():
            return files["report_json"]
    raise SelfaugError(f"`{run_id}` is neither a report.json file nor a run with a report in the store",
                       expected="a path to report.json, a run folder, or a run id (selfaug runs)", found=run_id)


def after_items(row: dict[str, Any]) -> dict[str, float]:
    by_stage = row.get("items", {}).get("by_stage", {})
    if not by_stage:
        return {}
    return by_stage[str(max(int(s) for s in by_stage))]


def display_names(named: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Each run's recipe title when the titles tell the runs apart, else the given names."""
    titles = [rep.get("title") or name for name, rep in named]
    return titles if len(set(titles)) == len(titles) else [n for n, _ in named]


def compare_reports(named: list[tuple[str, dict[str, Any]]], *, seed: int = 0) -> dict[str, Any]:
    """Per benchmark: each run's before/after/Δ and its paired test against the first run."""
    names = display_names(named)
    benchmarks: list[str] = []
    for _, rep in named:
        for row in rep["benchmarks"]:
            if row["benchmark"] not in benchmarks:
                benchmarks.append(row["benchmark"])
    out = []
    for bench in benchmarks:
        rows = [next((r for r in rep["benchmarks"] if r["benchmark"] == bench), None) for _, rep in named]
        ref = rows[0]
        cells = []
        for row in rows:
            if row is None:
                cells.append(None)
                continue
            cell = {"after": row.get("after"), "delta": row.get("delta"), "significant_vs_before": row.get("significant"),
                    "fingerprint": row.get("fingerprint"), "vs_reference": None}
            if ref is not None and row is not ref and row.get("fingerprint") == ref.get("fingerprint"):
                a, b = after_items(ref), after_items(row)
                if a and b:
                    cmp = compare_items(a, b, seed=seed)
                    cell["vs_reference"] = {"diff": cmp.delta, "p_value": cmp.p_value, "significant": cmp.significant,
                                            "ci_low": cmp.ci_low, "ci_high": cmp.ci_high, "n": cmp.n}
            cells.append(cell)
        before = next((r.get("before") for r in rows if r is not None), None)
        out.append({"benchmark": bench, "before": before, "runs": cells})
    return {"runs": names, "benchmarks": out}

"""``selfaug compare``: several runs side by side, with paired tests against a reference run
(``--reference``, else the first run given).

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


def load_run(ref: str, store_path: str | None = None) -> tuple[str, dict[str, Any], Path]:
    """(display name, report, report.json path) for a report.json path, a folder with one, or a run id."""
    path = Path(ref)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        path = Path(_report_of_run(ref, store_path))
        name = ref
    else:
        name = path.parent.name if path.name == "report.json" else path.stem
    try:
        return name, json.loads(path.read_text(encoding="utf-8")), path
    except json.JSONDecodeError as exc:
        raise SelfaugError(f"{path} is not valid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None


def load_report(ref: str, store_path: str | None = None) -> tuple[str, dict[str, Any]]:
    """(display name, report) for a report.json path, a folder with one, or a run id."""
    name, report, _ = load_run(ref, store_path)
    return name, report


def reference_first(refs: list[str], named: list[tuple[str, dict[str, Any]]], reference: str | None) -> list[int]:
    """The order to compare runs in: the reference, then the others as given. The reference is
    the run ``reference`` names (an argument as given, a run's display name or recipe title), or
    the first argument. Nothing is sorted: a shell glob expands in file-name order, which for
    ``report-<id>`` folders is hash order, hence ``--reference``."""
    order = list(range(len(refs)))
    if reference is None:
        return order
    names = display_names(named)
    hits = [i for i in order if reference in (refs[i], names[i], named[i][0], named[i][1].get("title"))]
    if not hits:
        hits = [i for i in order if Path(refs[i]).resolve() == Path(reference).resolve()]
    if len(hits) != 1:
        raise SelfaugError(f"--reference `{reference}` " + ("matches no run" if not hits else "matches several runs"),
                           field="--reference", expected="one of: " + ", ".join(dict.fromkeys(names + refs)),
                           found=reference, hint="name a run by its argument or by its name in the table")
    return [hits[0]] + [i for i in order if i != hits[0]]


def _report_of_run(run_id: str, store_path: str | None) -> str:
    from selfaug_compiler.store import open_store

    with open_store(store_path, read_only=True) as store:
        steps = store.run_steps(run_id)
    for step in reversed(steps):
        files = (step.get("result") or {}).get("files") or {}
        if files.get("report_json") and Path(files["report_json"]).is_file():
            return files["report_json"]
    raise SelfaugError(f"`{run_id}` is neither a report.json file nor a run with a report in the store",
                       expected="a path to report.json, a run folder, or a run id (as `selfaug run` prints it last)", found=run_id)


def after_items(row: dict[str, Any]) -> dict[str, float]:
    by_stage = row.get("items", {}).get("by_stage", {})
    if not by_stage:
        return {}
    return by_stage[str(max(int(s) for s in by_stage))]


def display_names(named: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Each run's recipe title when the titles tell the runs apart, else title and seed, else the
    given names."""
    titles = [rep.get("title") or name for name, rep in named]
    if len(set(titles)) == len(titles):
        return titles
    seeds = [((rep.get("meta") or {}).get("context") or {}).get("seed") for _, rep in named]
    with_seed = [f"{t} seed {s}" for t, s in zip(titles, seeds)]
    if None not in seeds and len(set(with_seed)) == len(with_seed):
        return with_seed
    return [n for n, _ in named]


def compare_reports(named: list[tuple[str, dict[str, Any]]], *, seed: int = 0, reference_by: str = "first run given",
                    files: list[str | Path | None] | None = None) -> dict[str, Any]:
    """Per benchmark: each run's before/after/Δ and its paired test against the first run (the
    reference). ``files``: each run's report.json, kept so pages can link the runs' reports."""
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
        noise = next((r["noise"] for r in rows if r is not None and r.get("noise")), None)
        out.append({"benchmark": bench, "before": before, "noise": noise, "runs": cells})
    files = files or [None] * len(named)
    from selfaug_compiler.report.frontier import frontier

    return {"runs": names, "reference": names[0], "reference_by": reference_by,
            "report_json": [None if f is None else str(Path(f).resolve()) for f in files], "benchmarks": out,
            "frontier": frontier([(rep.get("title") or name, rep) for name, rep in named])}  # seeds of a recipe: one arm

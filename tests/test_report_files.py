"""The forgetting report: report.json numbers, self-contained report.html, terminal table, compare."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from selfaug_compiler.report.build import EvalEntry, build_report
from selfaug_compiler.report.compare import compare_reports, load_report
from selfaug_compiler.report.step import write_report


def entry(bench, category, stage, scores, chance=0.25, **metrics):
    items = {f"{bench}-{i}": float(s) for i, s in enumerate(scores)}
    acc = sum(scores) / len(scores)
    return EvalEntry(bench, category, stage, {"acc": acc, "chance": chance, "fingerprint": f"fp-{bench}", **metrics},
                     items)


def plain_entries(after_arc=None):
    arc_before = [1] * 60 + [0] * 40
    arc_after = after_arc or ([1] * 50 + [0] * 10 + [0] * 40)  # b=10, c=0: p = 2 * 0.5**10
    piqa = [1, 0] * 50
    held_before = [0] * 18 + [1] * 2
    held_after = [1] * 12 + [0] * 6 + [1] * 2
    return [
        entry("arc_easy", "retention", 0, arc_before), entry("arc_easy", "retention", 1, arc_after),
        entry("piqa", "retention", 0, piqa, chance=0.5), entry("piqa", "retention", 1, piqa, chance=0.5),
        entry("heldout", "in_domain", 0, held_before, chance=0.0, gold_loss=1.5),
        entry("heldout", "in_domain", 1, held_after, chance=0.0, gold_loss=0.9),
    ]


def test_report_numbers():
    report = build_report(plain_entries(), title="demo", seed=0)
    rows = {r["benchmark"]: r for r in report["benchmarks"]}
    assert [r["category"] for r in report["benchmarks"]][0] == "in_domain"
    arc = rows["arc_easy"]
    assert math.isclose(arc["before"], 60.0) and math.isclose(arc["after"], 50.0)
    assert math.isclose(arc["delta"], -10.0)
    assert math.isclose(arc["relative_change_pct"], -100 / 6)  # signed like Δ: a loss is negative
    assert math.isclose(arc["normalized_change"], -0.10 / 0.35)
    assert "relative_drop_pct" not in arc and "normalized_drop" not in arc
    assert math.isclose(arc["p_value"], 2 * 0.5 ** 10) and arc["significant"] and arc["test"] == "mcnemar"
    assert rows["piqa"]["delta"] == 0 and not rows["piqa"]["significant"]
    held = rows["heldout"]
    assert math.isclose(held["delta"], 60.0) and held["gold_loss_after"] == 0.9
    assert math.isclose(held["relative_change_pct"], 600.0)  # a gain is a positive change, not a "−600 % drop"
    s = report["summary"]
    assert math.isclose(s["retention_mean_delta"], -5.0)
    assert s["retention_significant_drops"] == 1
    assert math.isclose(s["in_domain_gain"], 60.0)
    assert s["continual_fg"] is None  # one stage: not a continual recipe


def test_continual_fg_across_stages():
    e = [entry("arc_easy", "retention", 0, [1] * 50 + [0] * 50),
         entry("arc_easy", "retention", 1, [1] * 40 + [0] * 60),
         entry("arc_easy", "retention", 2, [1] * 25 + [0] * 75)]
    report = build_report(e)
    # (50-40)/50 = 20 %, (50-25)/50 = 50 % -> FG 35 %
    assert math.isclose(report["summary"]["continual_fg"], 35.0)
    assert report["benchmarks"][0]["acc_by_stage"] == [50.0, 40.0, 25.0]


def test_report_files_contents(tmp_path):
    e = plain_entries() + [entry("arc_easy", "retention", 2, [1] * 45 + [0] * 55),
                           entry("piqa", "retention", 2, [1, 0] * 50, chance=0.5)]
    report = build_report(e, title="demo")
    files = write_report(report, tmp_path / "out")
    data = json.loads(Path(files["report_json"]).read_text())
    assert data["format"] == "selfaug-report/2" and data["title"] == "demo"
    arc = next(r for r in data["benchmarks"] if r["benchmark"] == "arc_easy")
    assert math.isclose(arc["after"], 45.0) and "arc_easy-0" in arc["items"]["by_stage"]["0"]
    page = Path(files["report_html"]).read_text()
    assert page.count('src="data:image/png;base64,') + page.count("src='data:image/png;base64,") >= 3  # + stage curve
    assert "arc_easy" in page and "-15.0" in page and "Continual forgetting FG" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_terminal_table_lists_benchmarks():
    from rich.console import Console

    from selfaug_compiler.report.table import forgetting_table

    console = Console(record=True, width=200)
    console.print(forgetting_table(build_report(plain_entries(), title="demo")))
    text = console.export_text()
    arc_line = next(line for line in text.splitlines() if "arc_easy" in line)
    assert "-10.0" in arc_line and "0.00195" in arc_line
    cells = [c.strip() for c in arc_line.split("│")]
    assert cells[-2] == "–"  # no noise floor measured here
    assert cells[-3] == "**"  # .001 <= p < .01


def test_compare_marks_significant_differences(tmp_path):
    worse = [1] * 30 + [0] * 30 + [0] * 40  # 30 % after: 20 fewer right items than run A
    a = build_report(plain_entries(), title="sft")
    b = build_report(plain_entries(after_arc=worse), title="sa-sft")
    pa = write_report(a, tmp_path / "sft")["report_json"]
    pb = write_report(b, tmp_path / "sa_sft")["report_json"]
    comparison = compare_reports([load_report(pa), load_report(str(tmp_path / "sa_sft"))])
    assert comparison["runs"] == ["sft", "sa-sft"]  # the recipes' titles
    same_title = compare_reports([load_report(pa), ("copy", dict(a))])
    assert same_title["runs"] == ["sft", "copy"]  # titles that do not tell runs apart: the given names
    arc = next(r for r in comparison["benchmarks"] if r["benchmark"] == "arc_easy")
    ref, other = arc["runs"]
    assert ref["vs_reference"] is None
    assert other["vs_reference"]["significant"] and math.isclose(other["vs_reference"]["diff"], -20.0)
    piqa = next(r for r in comparison["benchmarks"] if r["benchmark"] == "piqa")
    assert not piqa["runs"][1]["vs_reference"]["significant"]
    assert Path(pb).is_file()


def test_compare_cli(tmp_path):
    from selfaug_compiler.cli import main

    a = write_report(build_report(plain_entries(), title="a"), tmp_path / "a")["report_json"]
    b = write_report(build_report(plain_entries(after_arc=[1] * 30 + [0] * 70), title="b"), tmp_path / "b")["report_json"]
    assert main(["compare", a, b, "--format", "json"]) == 0
    assert main(["compare", a]) == 2
    assert main(["compare", a, str(tmp_path / "missing.json"), "--store", str(tmp_path / "s.duckdb")]) == 2


@pytest.fixture(autouse=True)
def _no_display(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")

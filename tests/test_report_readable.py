"""Reports people can read alone (issue 16, point 6): what the run was, gains shown as gains, one
meaning for the noise column, marks inside the plot, compared runs linked, a chosen reference,
results files whose commands work from the repository root, and files with normal permissions."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from selfaug_compiler.compile.planner import build_plan
from selfaug_compiler.plan import Plan
from selfaug_compiler.recipe.loader import load_recipe
from selfaug_compiler.report.build import EvalEntry, build_report
from selfaug_compiler.report.step import execute as report_execute
from selfaug_compiler.report.step import write_report
from selfaug_compiler.runtime import StepContext, StepResult
from selfaug_compiler.store import open_store

ROOT = Path(__file__).resolve().parents[1]
MIX = {"gold": 2, "self": 3, "paraphrase": 1}


def _scores(n: int, right: int) -> list[dict]:
    return [{"id": f"q{i}", "acc": float(i < right)} for i in range(n)]


def _record_upstream(store, plan: Plan) -> str:
    """What the mix and train steps of ``plan`` would have recorded: a training set and a model."""
    mix = plan.step("mix")
    rows = [{"key": f"{source}-{i}", "prompt": f"p {source} {i}", "response": "positive", "source": source}
            for source, n in MIX.items() for i in range(n)]
    version = store.commit("lab-s3ft-mix", rows, step_id=mix.id, recipe_hash=plan.recipe_hash, message="mix")
    store.record_step("run-1", "mix", mix.id, "done", None, None, StepResult(datasets={"dataset": version.ref}).to_dict())
    train = plan.step("train")
    store.record_step("run-1", "train", train.id, "done", None, None,
                      StepResult(model="/m", model_fingerprint="tuned-fp").to_dict())
    return version.ref


def _eval_inputs(store, plan: Plan) -> dict[str, StepResult]:
    """Made-up evaluate results for every eval input of the report step (per-item scores in the store)."""
    inputs = {}
    for spec in plan.step("report").params["evals"]:
        bench, stage = spec["benchmark"], spec["stage"]
        model = "tuned-fp:float32" if stage else "base-fp:float32"
        if bench == "heldout":  # in-domain: a gain, and the gold loss falls
            items = _scores(20, 18 if stage else 10)
            metrics = {"acc": 0.9 if stage else 0.5, "gold_loss": 0.2 if stage else 3.0}
        else:  # retention: a drop on every benchmark
            items = _scores(100, 40 if stage else (79 if spec.get("role") == "noise" else 80))
            metrics = {"acc": sum(i["acc"] for i in items) / 100}
        fp = f"fp-{bench}" + ("-noise" if spec.get("role") == "noise" else "")
        store.put_eval(model, fp, bench, metrics, items)
        inputs[spec["step"]] = StepResult(metrics={"model_key": model, "fingerprint": fp, "benchmark": bench})
    return inputs


@pytest.fixture
def lab_report(tmp_path):
    """report.json / report.html of the lab's S3FT recipe (seed 1), built by the real report step."""
    old = os.umask(0o022)
    try:
        plan = build_plan(load_recipe(ROOT / "recipes" / "lab" / "s3ft.yaml", ["seed=1"]))
        with open_store(tmp_path / "store.duckdb") as store:
            ref = _record_upstream(store, plan)
            ctx = StepContext(plan=plan, step=plan.step("report"), store=store, work_dir=tmp_path / "report",
                              recipe_dir=ROOT / "recipes" / "lab", inputs=_eval_inputs(store, plan))
            result = report_execute(ctx)
    finally:
        os.umask(old)
    return plan, ref, result.files


def test_report_html_says_what_the_run_was(lab_report):
    plan, ref, files = lab_report
    page = Path(files["report_html"]).read_text(encoding="utf-8")
    context = json.loads(Path(files["report_json"]).read_text())["meta"]["context"]
    assert context["model"] == {"ref": "packaged:smollm2-135m-instruct", "revision": None, "dtype": "float32"}
    assert context["recipe"] == "lab-s3ft" and context["recipe_hash"] == plan.recipe_hash and context["seed"] == 1
    stage = context["stages"][0]
    assert stage["training_set"]["ref"] == ref and stage["training_set"]["by_source"] == MIX
    assert stage["method"] == "full" and stage["model_fingerprint"] == "tuned-fp"
    assert "packaged:smollm2-135m-instruct (evaluated in float32)" in page
    assert f"lab-s3ft · hash {plan.recipe_hash[:12]} · " in page and context["recipe_path"].endswith("recipes/lab/s3ft.yaml")
    assert "<dt>seed</dt><dd>1</dd>" in page
    assert "6 rows: gold 2 · self 3 · paraphrase 1); full fine-tuning, lr 0.0001, 1 epoch<" in page and ref[:ref.index("@") + 13] in page
    assert "heldout gold loss 3.00 → 0.20 nats/token" in page
    assert "nats per token, that the model gives the held-out gold replies; lower =" in page


def test_terminal_report_names_the_run_too(lab_report, capsys):
    from selfaug_compiler.report.step import print_report

    _, ref, files = lab_report
    print_report(json.loads(Path(files["report_json"]).read_text()))  # read back: keys sorted in the file
    out = capsys.readouterr().out
    assert "model: packaged:smollm2-135m-instruct (evaluated in float32)" in out and "seed: 1" in out
    assert "6 rows: gold 2 · self 3 · paraphrase 1)" in out  # sources in their usual order, not alphabetical


def test_gains_are_not_shown_as_negative_drops(lab_report, capsys):
    _, _, files = lab_report
    report = json.loads(Path(files["report_json"]).read_text())
    held = next(r for r in report["benchmarks"] if r["benchmark"] == "heldout")
    assert held["delta"] > 0 and held["relative_change_pct"] == pytest.approx(80.0)
    page = Path(files["report_html"]).read_text(encoding="utf-8")
    assert "drop %" not in page and "rel. change %" in page
    row = re.search(r"<tr class='gain'><td>heldout</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[4:7] == ["+40.0", "+80.0", "+0.80"]  # Δ, rel. change, norm. change: all signed as gains
    arc = next(r for r in report["benchmarks"] if r["benchmark"] == "arc_easy")
    assert arc["relative_change_pct"] == pytest.approx(-50.0)


def test_noise_column_means_the_same_everywhere(lab_report, tmp_path):
    from rich.console import Console

    from selfaug_compiler.report.compare import compare_reports
    from selfaug_compiler.report.table import NOISE_COLUMN, compare_markdown, compare_table, forgetting_table
    from selfaug_compiler.study.markdown import noise_table
    from selfaug_compiler.study.results import noise_rows

    _, _, files = lab_report
    report = json.loads(Path(files["report_json"]).read_text())
    console = Console(record=True, width=400)
    console.print(forgetting_table(report))
    comparison = compare_reports([("a", report), ("b", dict(report, title="b"))])
    console.print(compare_table(comparison))
    text = console.export_text()
    page = Path(files["report_html"]).read_text(encoding="utf-8")
    # arc_easy: 1 of 100 items flips between the two scorings of the base model = 1.0 point
    # each table: its column header and the sentence (caption) saying what the number is
    assert text.count(NOISE_COLUMN) == 4 and page.count(NOISE_COLUMN) == 2
    assert re.search(r"│ arc_easy +│ retention .*│ +1\.0 │\n", text)  # report table: the flip share, last column
    assert re.search(r"│ arc_easy +│ +80\.0 │ +1\.0 │", text)  # compare table: the same number after "before"
    assert f"arc_easy (before 80.0, {NOISE_COLUMN} 1.0)" in compare_markdown(comparison)
    assert f"| {NOISE_COLUMN} |" in noise_table(noise_rows(report))
    assert "noise ±" not in text + page


def test_significance_marks_stay_inside_the_plot():
    from selfaug_compiler.report.html import before_after_axes

    rows = [{"benchmark": b, "before": before, "after": after, "significant": True, "p_value": 1e-6, "chance": 25.0}
            for b, before, after in (("arc_easy", 100.0, 97.0), ("sciq", 99.0, 100.0), ("style", 80.0, 30.0))]
    fig, ax = before_after_axes(rows)
    fig.canvas.draw()
    box = ax.get_window_extent()
    marks = [t for t in ax.texts if t.get_text() == "***"]
    assert len(marks) == 3
    for mark in marks:
        extent = mark.get_window_extent()
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1 and box.x0 <= extent.x0 and extent.x1 <= box.x1
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= box.x1 - 1  # beside the plot, not over the bars and marks


def _two_reports(tmp_path):
    def entries(after_right: int) -> list[EvalEntry]:
        base = {f"q{i}": float(i < 80) for i in range(100)}
        after = {f"q{i}": float(i < after_right) for i in range(100)}
        return [EvalEntry("arc_easy", "retention", 0, {"acc": 0.8, "fingerprint": "fa"}, base),
                EvalEntry("arc_easy", "retention", 1, {"acc": after_right / 100, "fingerprint": "fa"}, after)]

    # Folder names sort the other way round from the order given, as report-<hash> folders do.
    a = write_report(build_report(entries(40), title="sft"), tmp_path / "report-f00")["report_json"]
    b = write_report(build_report(entries(78), title="s3ft"), tmp_path / "report-0aa")["report_json"]
    return a, b


def test_compare_keeps_the_order_given_and_names_the_reference(tmp_path, capsys):
    from selfaug_compiler.cli import main

    a, b = _two_reports(tmp_path)
    assert main(["compare", a, b, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runs"] == ["sft", "s3ft"] and out["reference"] == "sft" and out["reference_by"] == "first run given"
    arc = out["benchmarks"][0]["runs"]
    assert arc[0]["vs_reference"] is None and arc[1]["vs_reference"]["diff"] == pytest.approx(38.0)

    assert main(["compare", a, b, "--reference", "s3ft", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runs"] == ["s3ft", "sft"] and out["reference_by"] == "--reference"
    assert out["benchmarks"][0]["runs"][1]["vs_reference"]["diff"] == pytest.approx(-38.0)

    assert main(["compare", a, b, "--reference", b]) == 0  # an argument as given works too
    text = capsys.readouterr().out
    assert "reference: s3ft (--reference)" in text and "s3ft (reference)" in text
    assert main(["compare", a, b]) == 0
    assert "reference: sft (first run given; choose another with --reference)" in capsys.readouterr().out
    assert main(["compare", a, b, "--reference", "nope"]) == 2
    assert "--reference `nope` matches no run" in capsys.readouterr().err


def test_compare_html_links_the_runs_reports(tmp_path, capsys):
    from selfaug_compiler.cli import main

    a, b = _two_reports(tmp_path)
    out = tmp_path / "pages" / "compare.html"
    assert main(["compare", a, b, "--html", str(out), "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("reference: sft (first run given")
    page = out.read_text(encoding="utf-8")
    hrefs = re.findall(r"href='([^']+)'", page)
    assert [(out.parent / h).resolve() for h in hrefs] == [Path(a).with_name("report.html").resolve(),
                                                           Path(b).with_name("report.html").resolve()]
    assert "sft (reference)" in page


def test_written_files_get_normal_permissions(tmp_path):
    from selfaug_compiler.files import write_atomic
    from selfaug_compiler.study.markdown import replace_section

    old = os.umask(0o022)
    try:
        replace_section(tmp_path / "results.md", "table", title="Results", study_name="lab")
        files = write_report(build_report(_two_entries()), tmp_path / "report")
    finally:
        os.umask(old)
    for path in [tmp_path / "results.md", Path(files["report_json"]), Path(files["report_html"])]:
        assert path.stat().st_mode & 0o777 == 0o644, path
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "results.md", "again")  # replacing a file: the umask's mode, not the old one
    finally:
        os.umask(old)
    assert (tmp_path / "results.md").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "results.md"]  # no temporary files left


def _two_entries() -> list[EvalEntry]:
    return [EvalEntry("arc_easy", "retention", 0, {"acc": 0.5}, {"q0": 1.0, "q1": 0.0}),
            EvalEntry("arc_easy", "retention", 1, {"acc": 0.5}, {"q0": 1.0, "q1": 0.0})]


def test_reproduce_commands_work_from_the_repository_root(tmp_path):
    from selfaug_compiler.study.publish import results_section
    from selfaug_compiler.study.spec import load_study
    from tests.test_lab_units import _fake_run

    study = load_study(ROOT / "studies" / "demo.yaml")
    runs = [_fake_run(tmp_path, "sft", 0, 40), _fake_run(tmp_path, "s3ft", 0, 78)]
    (tmp_path / "sft-0" / "report.html").write_text("<html></html>")
    results = tmp_path / "out" / "demo" / "results.md"
    text = results_section(study, runs, results, None)
    block = text.split("## Reproduce", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].split() for line in block.strip().splitlines()]
    assert commands[0] == ["make", "demo"]
    for words in commands[1:]:
        paths = [w for w in words if w.endswith((".yaml", ".duckdb"))]
        assert paths and all(not p.startswith("..") for p in paths), words
        assert all((ROOT / p).is_file() for p in paths if p.endswith(".yaml")), words
    assert ["studies/demo.yaml"] == [w for w in commands[1] if w.endswith(".yaml")]
    assert "recipes/demo/sft.yaml --set seed=0 --store .selfaug/lab.duckdb" in block
    links = dict(re.findall(r"\| (sft/seed0|s3ft/seed0) \| \[report\.html\]\(([^)]+)\)", text))
    assert (results.parent / links["sft/seed0"]).resolve() == (tmp_path / "sft-0" / "report.html").resolve()
    compare_page = results.parent / re.search(r"\[compare\.html\]\(([^)]+)\)", text).group(1)
    assert compare_page.is_file() and "sft (reference)" in compare_page.read_text()


def test_results_in_a_repository_do_not_link_to_reports_outside_it(tmp_path):
    """docs/results.md is read on other machines: a run whose store lies outside the repository
    is named, not linked (the link would be dead), and no compare.html is written for it."""
    from selfaug_compiler.study.publish import results_section
    from selfaug_compiler.study.spec import load_study
    from tests.test_lab_units import _fake_run

    study = load_study(ROOT / "studies" / "demo.yaml")
    runs = [_fake_run(tmp_path / "store", "sft", 0, 40), _fake_run(tmp_path / "store", "s3ft", 0, 78)]
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    text = results_section(study, runs, repo / "docs" / "results.md", None)
    assert "| sft/seed0 | `sft-0/report.html` | `sft-0/report.json` |" in text
    assert "artifacts folder beside the store, outside this repository" in text
    assert "](" not in text.split("## Each run's report", 1)[1].split("## Reproduce", 1)[0]
    assert "compare.html" not in text and not list(repo.rglob("compare.html"))
    assert (repo / "docs" / "results_files" / "forgetting-demo" / "deltas.png").is_file()

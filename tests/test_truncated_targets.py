"""Replies cut off at max_new_tokens are never training targets unless the recipe says so
(issue 16, point 5): S3FT answers and paraphrases, SDFT rewrites, SA-SFT dialogues; the counts
are reported; `validate` warns when a limit is small for the task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfaug_compiler.augment import s3ft, sa_sft, sdft
from selfaug_compiler.augment.common import TRUNCATED, judge_complete
from selfaug_compiler.augment.mix import mix_rows
from selfaug_compiler.compile.planner import PlanBuilder
from selfaug_compiler.judges.verdicts import judge_items
from selfaug_compiler.recipe.schema import (
    FieldMap, FileSource, Greedy, Recipe, S3ftParams, SaSftParams, Sampling, SdftParams, TaskSpec, content_view,
)

LABELS = ["positive", "negative"]


def task(i: int) -> dict:
    return {"key": f"k{i}", "prompt": f"review {i}", "response": LABELS[i % 2], "source": "gold",
            "meta": json.dumps({"gold": LABELS[i % 2]})}


TASK = [task(i) for i in range(4)]


def generated(key: str, text: str, finish: str, source: str, gold: str) -> dict:
    """A generated row as `s3ft.generated_row` writes it (limit 64)."""
    return {"key": key, "prompt": "review", "response": text, "source": source,
            "sampling": json.dumps({"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 64}), "response_tokens": 64,
            "meta": json.dumps({"gold": gold, "gold_response": gold, "raw": text, "finish_reason": finish})}


def judge_choice_rows(rows: list[dict]) -> list[dict]:
    verdicts = judge_items(s3ft.judge_inputs(rows), {"kind": "choice"})
    return s3ft.with_verdicts(rows, verdicts, "judge-id")


# ----------------------------------------------------------------------------- S3FT
CUT = "The sentiment is positive, but it's also somewhat negative... The reviewer "


def test_truncated_self_answer_with_the_right_label_is_refused_and_falls_back():
    answers = [generated("k0", "positive. A warm film.", "stop", "self", "positive"),
               generated("k1", "The sentiment is negative, and the reviewer also ", "length", "self", "negative"),
               generated("k2", CUT, "length", "self", "positive"),
               generated("k3", "negative, clearly.", "stop", "self", "negative")]
    judged, refused = judge_complete(answers, judge_choice_rows, accept_truncated=False, judge_name="choice",
                                     step_id="judge-id")
    assert refused == 2
    assert [r["judge_verdict"] for r in judged] == ["pass", "fail", "fail", "pass"]
    cut = judged[2]
    meta = json.loads(cut["meta"])
    # refused although the label judge alone would accept it; the raw output stays, the reason is recorded
    assert judge_items(s3ft.judge_inputs([answers[2]]), {"kind": "choice"})[0].passed
    assert meta["excluded"] == TRUNCATED and meta["raw"] == CUT and cut["response"] == CUT
    assert "max_new_tokens=64" in json.loads(cut["judge_raw"])["refused"] and cut["judge_name"] == "choice"

    # the refused answers are paraphrased, exactly like wrong ones
    items = s3ft.paraphrase_items(TASK, judged, "prompts/paraphrase.j2", None, seed=0)
    assert [it.key for it in items] == ["k1", "k2"]
    paras = [generated("k1", "The review is negative.", "stop", "paraphrase", "negative"),
             generated("k2", "The review is positive and " + "very " * 30, "length", "paraphrase", "positive")]
    judged_paras, refused_paras = judge_complete(paras, judge_choice_rows, accept_truncated=False,
                                                 judge_name="choice", step_id="judge-id")
    assert refused_paras == 1
    rows, stats = mix_rows("s3ft", {}, TASK, {"judge.self_answer": judged, "judge.paraphrase": judged_paras},
                           seed=0, step_id="mix-id")
    assert [r["source"] for r in rows] == ["self", "paraphrase", "gold", "self"]
    assert rows[2]["response"] == "positive"  # the truncated answer and paraphrase gave way to gold
    trail = json.loads(rows[2]["meta"])["s3ft"]
    assert trail["self_excluded"] == TRUNCATED and trail["paraphrase_excluded"] == TRUNCATED
    assert stats["refused_truncated"] == {"judge.self_answer": 2, "judge.paraphrase": 1}


def test_accept_truncated_judges_cut_replies_like_any_other():
    answers = [generated("k0", CUT, "length", "self", "positive")]
    judged, refused = judge_complete(answers, judge_choice_rows, accept_truncated=True, judge_name="choice",
                                     step_id="judge-id")
    assert refused == 0 and judged[0]["judge_verdict"] == "pass"
    assert "excluded" not in json.loads(judged[0]["meta"])
    rows, stats = mix_rows("s3ft", {}, TASK[:1], {"judge.self_answer": judged, "judge.paraphrase": []},
                           seed=0, step_id="m")
    assert rows[0]["source"] == "self" and stats["refused_truncated"] == {}


# ----------------------------------------------------------------------------- SDFT
def test_truncated_rewrite_is_refused_and_gold_kept():
    params = {"leak_phrases": [], "check_final_number": False, "answer_type": "choice"}
    rewrites = [generated("k0", "This review is positive: it praises the acting.", "stop", "rewrite", "positive"),
                generated("k1", "This review is negative because the plot and the " , "length", "rewrite", "negative")]
    judge = lambda rows: sdft.judge_rewrites(rows, params, "j")  # noqa: E731
    judged, refused = judge_complete(rewrites, judge, accept_truncated=False, judge_name=sdft.JUDGE_NAME, step_id="j")
    assert refused == 1 and [r["judge_verdict"] for r in judged] == ["pass", "fail"]
    assert sdft.judge_rewrites(rewrites[1:], params, "j")[0]["judge_verdict"] == "pass"  # its label is right
    rows, stats = mix_rows("sdft", params, TASK[:2], {"judge.rewrite": judged}, seed=0, step_id="m")
    assert [r["source"] for r in rows] == ["rewrite", "gold"]
    assert "truncated" in json.loads(rows[1]["meta"])["sdft_rejected"]
    assert stats["refused_truncated"] == {"judge.rewrite": 1}
    # opted in: the same rewrite is accepted
    accepted, _ = judge_complete(rewrites, judge, accept_truncated=True, judge_name=sdft.JUDGE_NAME, step_id="j")
    assert [r["judge_verdict"] for r in accepted] == ["pass", "pass"]


# ----------------------------------------------------------------------------- SA-SFT
def test_dialogue_with_one_truncated_turn_is_dropped_unless_accepted():
    state = {"key": "sa-0", "topic": "tea", "seed": 1, "prompt_tokens": 3, "response_tokens": 9,
             "messages": [{"role": "user", "content": "Tell me about tea."},
                          {"role": "assistant", "content": "Tea is a drink made from leaves."},
                          {"role": "user", "content": "And green tea?"},
                          {"role": "assistant", "content": "Green tea is not oxidised, so it keeps"}],
             "raw": ["u", "a", "u", "a"], "finish": ["stop", "stop", "stop", "length"]}

    class Loaded:
        ref, fingerprint = "tiny", "fp"

    kw = dict(loaded=Loaded(), step_id="g", template_hash=None, sampling={"max_new_tokens": 9}, max_repetition=0.9)
    dropped = sa_sft.dialogue_row(state, **kw)
    kept = sa_sft.dialogue_row(state, **kw, accept_truncated=True)
    assert json.loads(dropped["meta"])["excluded"] == TRUNCATED
    assert json.loads(kept["meta"])["excluded"] is None
    rows, stats = mix_rows("sa_sft", {"ratio": 1.0}, TASK[:1], {"generate.self_dialogue": [dropped]}, seed=0,
                           step_id="m")
    assert [r["source"] for r in rows] == ["gold"] and stats["refused_truncated"] == {"generate.self_dialogue": 1}
    rows, _ = mix_rows("sa_sft", {"ratio": 1.0}, TASK[:1], {"generate.self_dialogue": [kept]}, seed=0, step_id="m")
    assert [r["source"] for r in rows] == ["gold", "self_dialogue"]


def test_data_show_counts_excluded_rows(tmp_path: Path, capsys):
    from selfaug_compiler.cli import main
    from selfaug_compiler.store import open_store

    answers = [generated("k0", "positive.", "stop", "self", "positive"), generated("k1", CUT, "length", "self", "positive")]
    judged, _ = judge_complete(answers, judge_choice_rows, accept_truncated=False, judge_name="choice", step_id="j")
    store = tmp_path / "s.duckdb"
    with open_store(store) as s:
        s.commit("judged", judged, step_id="j", message="judge")
    assert main(["data", "show", "judged", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "excluded: truncated 1" in out  # the version's count
    assert out.count("truncated") == 2  # and the refused row's cell in the table
    assert main(["data", "show", "judged", "--store", str(store), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["excluded"] == {"truncated": 1}


# ----------------------------------------------------------------------------- recipe field and ids
def recipe(augment) -> Recipe:
    return Recipe(name="r", task=TaskSpec(name="t", source=FileSource(path="t.jsonl"), answer_type="choice",
                                          fields=FieldMap(prompt="question", response="answer")), augment=augment)


def test_accept_truncated_enters_the_ids_of_the_steps_it_affects_only_when_set(tmp_path: Path):
    (tmp_path / "t.jsonl").write_text(json.dumps({"question": "q", "answer": "positive"}) + "\n")
    for default, opted in [(S3ftParams(), S3ftParams(accept_truncated=True)),
                           (SdftParams(), SdftParams(accept_truncated=True)),
                           (SaSftParams(), SaSftParams(accept_truncated=True))]:
        assert "accept_truncated" not in content_view(default)  # recipes that do not set it keep their ids
        assert content_view(opted)["accept_truncated"] is True
        a = {s.name: s for s in PlanBuilder(recipe(default), tmp_path).build().steps}
        b = {s.name: s for s in PlanBuilder(recipe(opted), tmp_path).build().steps}
        changed = sorted(n for n in a if a[n].id != b[n].id)
        gen = {"s3ft": "generate.self_answer", "sdft": "generate.rewrite", "sa_sft": None}[default.method]
        if gen:  # the generation itself does not depend on acceptance: reused
            assert gen not in changed and all(b[n].params["accept_truncated"] for n in changed if n.startswith("judge"))
        else:
            assert "generate.self_dialogue" in changed
        assert "mix" in changed and "train" in changed and "eval.before.heldout" not in changed


# ----------------------------------------------------------------------------- validate
def write_recipe(folder: Path, augment: str, gold: str = "positive") -> Path:
    (folder / "t.jsonl").write_text(json.dumps({"question": "Is this review positive?", "answer": gold}) + "\n")
    path = folder / "r.yaml"
    path.write_text("name: r\n"
                    "task: {name: t, source: {kind: file, path: t.jsonl}, answer_type: text}\n"
                    f"augment: {augment}\n"
                    "eval: {retention: [], in_domain: []}\n"
                    "model: {ref: 'packaged:smollm2-135m-instruct'}\n")
    return path


def warnings_of(path: Path) -> list:
    from selfaug_compiler.compile.checks import check_recipe
    from selfaug_compiler.recipe.loader import load_recipe

    report = check_recipe(load_recipe(path))
    assert report.ok
    return [p for p in report.problems if p.severity == "warning" and "max_new_tokens" in p.message]


def test_validate_warns_for_a_tiny_limit(tmp_path: Path):
    tiny = write_recipe(tmp_path, "{method: s3ft, judge: {kind: embedding}, answer: {max_new_tokens: 16}}")
    found = warnings_of(tiny)
    assert len(found) == 1 and found[0].field == "augment.answer.max_new_tokens"
    assert found[0].location.line == 3 and found[0].found == "16" and ">= 256" in found[0].expected
    assert "accept_truncated" in found[0].hint
    assert warnings_of(write_recipe(tmp_path, "{method: s3ft, judge: {kind: embedding}}")) == []
    opted = "{method: s3ft, judge: {kind: embedding}, answer: {max_new_tokens: 16}, accept_truncated: true}"
    assert warnings_of(write_recipe(tmp_path, opted)) == []


def test_validate_limit_follows_long_gold_replies(tmp_path: Path):
    long_gold = "Step. " * 400  # 2,400 characters: ~600 tokens, so a rewrite needs about 1,200
    found = warnings_of(write_recipe(tmp_path, "{method: sdft, sampling: {max_new_tokens: 256}}", gold=long_gold))
    assert [p.field for p in found] == ["augment.sampling.max_new_tokens"] and ">= 1200" in found[0].expected
    sa = warnings_of(write_recipe(tmp_path, "{method: sa_sft, sampling: {max_new_tokens: 256}}", gold=long_gold))
    assert sa == []  # dialogues are not about the task: the floor alone applies
    assert len(warnings_of(write_recipe(tmp_path, "{method: sa_sft, sampling: {max_new_tokens: 64}}"))) == 1


# ----------------------------------------------------------------------------- the steps on a tiny model
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("trunc")
    build_tiny_model(root / "tiny")
    with open(root / "toy.jsonl", "w") as f:
        for i in range(4):
            f.write(json.dumps({"id": f"q{i}", "question": f"Tom has {i} apples. How many?", "answer": f"#### {i}"}) + "\n")
    return root


def run_s3ft(root: Path, store: Path, accept: bool):
    from selfaug_compiler.recipe.schema import ExecutionSpec, JudgeSpec, ModelSpec
    from selfaug_compiler.runner import Runner, select_steps

    cut = Greedy(max_new_tokens=3)  # a random model almost never stops within 3 tokens
    aug = S3ftParams(answer=cut, paraphrase=cut, judge=JudgeSpec(kind="embedding", threshold=-1.0),
                     accept_truncated=accept)
    r = Recipe(name="tr", seed=1, model=ModelSpec(ref=str(root / "tiny"), dtype="float32"),
               task=TaskSpec(name="toy", source=FileSource(path="toy.jsonl"), answer_type="number",
                             fields=FieldMap(prompt="question", response="answer", id="id")),
               augment=aug, execution=ExecutionSpec(device="cpu", generate_batch_size=4))
    plan = PlanBuilder(r, root).build()
    summary = Runner(plan, store_path=store, recipe_dir=root, echo=lambda s: None).run(select_steps(plan, until=["mix"]))
    return plan, summary


def test_s3ft_steps_refuse_truncated_answers_and_report_counts(workspace, tmp_path, capsys):
    from selfaug_compiler.store import open_store

    store = tmp_path / "store.duckdb"
    plan, summary = run_s3ft(workspace, store, accept=False)
    with open_store(store) as s:
        generated_rows = s.read(summary.result_of("generate.self_answer").datasets["dataset"]).to_pylist()
        cut = sum(json.loads(r["meta"])["finish_reason"] == "length" for r in generated_rows)
        mix = s.read(summary.result_of("mix").datasets["dataset"]).to_pylist()
        recorded = s.step_result(plan.step("judge.self_answer").id)
    assert cut >= 3  # the embedding judge at threshold -1 would accept every one of them
    metrics = summary.result_of("judge.self_answer").metrics
    assert metrics["refused_truncated"] == cut and metrics["accepted"] == len(generated_rows) - cut
    assert recorded["metrics"]["refused_truncated"] == cut  # in the store's step record
    assert sum(r["source"] == "self" for r in mix) == len(generated_rows) - cut
    out = capsys.readouterr().out
    assert f"{cut} cut off at max_new_tokens=3, refused" in out and "refused as cut off at max_new_tokens" in out

    _, opted = run_s3ft(workspace, tmp_path / "opted.duckdb", accept=True)
    assert opted.result_of("judge.self_answer").metrics["refused_truncated"] == 0
    with open_store(tmp_path / "opted.duckdb") as s:
        rows = s.read(opted.result_of("mix").datasets["dataset"]).to_pylist()
    assert [r["source"] for r in rows] == ["self"] * 4

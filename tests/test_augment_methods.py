"""The method logic as plain functions: no store, no model."""

from __future__ import annotations

import json

import pytest

from selfaug_compiler.augment import sa_sft, s3ft, sdft
from selfaug_compiler.augment.common import row_seed
from selfaug_compiler.augment.mix import mix_rows
from selfaug_compiler.augment.replay import sample_replay
from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.generate.engine import Generation


def task(i: int) -> dict:
    return {"key": f"k{i}", "prompt": f"q{i}", "response": f"work\n#### {i}", "source": "gold",
            "meta": json.dumps({"gold": str(i)})}


TASK = [task(i) for i in range(6)]


def test_row_seed_is_stable_and_distinct():
    assert row_seed(1, "self_answer", "a") == row_seed(1, "self_answer", "a")
    assert len({row_seed(1, "self_answer", "a"), row_seed(2, "self_answer", "a"),
                row_seed(1, "paraphrase", "a"), row_seed(1, "self_answer", "b")}) == 4


# ----------------------------------------------------------------------------- SA-SFT
def test_default_topics_and_recipe_topics(tmp_path):
    assert len(sa_sft.load_topics(None)) >= 100
    assert sa_sft.load_topics(["tea", " ", "chess"]) == ["tea", "chess"]
    (tmp_path / "t.txt").write_text("# comment\nalpha\n\nbeta\n")
    assert sa_sft.load_topics("t.txt", tmp_path) == ["alpha", "beta"]
    with pytest.raises(SelfaugError):
        sa_sft.load_topics("missing.txt", tmp_path)
    with pytest.raises(SelfaugError):
        sa_sft.load_topics([])


def test_dialogue_plan_is_seeded_and_cycles_topics():
    a = sa_sft.dialogue_plan(5, ["x", "y"], seed=3)
    assert a == sa_sft.dialogue_plan(5, ["x", "y"], seed=3)
    assert len({k for k, _ in a}) == 5 and sorted(t for _, t in a) in (["x", "x", "x", "y", "y"], ["x", "x", "y", "y", "y"])
    assert {t for _, t in a[:2]} == {"x", "y"}  # shuffled once, then cycled
    assert sa_sft.dialogue_count(None, 0.5, 7) == 4 and sa_sft.dialogue_count(10, 0.5, 7) == 10


def test_repetition_and_exclusion_reasons():
    assert sa_sft.repetition_share("one two three four five six") == 0.0
    assert sa_sft.repetition_share("la la la la la la la la la la") > 0.8
    ok = [{"role": "user", "content": "Tell me about tea"}, {"role": "assistant", "content": "Tea is a drink."}]
    assert sa_sft.exclusion_reason(ok, ["stop", "stop"], 0.3) is None
    assert sa_sft.exclusion_reason(ok, ["stop", "length"], 0.3) == "truncated"
    assert sa_sft.exclusion_reason([ok[0], {"role": "assistant", "content": " "}], ["stop", "stop"], 0.3) == "empty"
    loop = [ok[0], {"role": "assistant", "content": "I am here. " * 20}]
    assert sa_sft.exclusion_reason(loop, ["stop", "stop"], 0.3) == "degenerate"
    assert sa_sft.clean_user_turn('User: "How do I brew tea?"') == "How do I brew tea?"


def test_run_dialogues_alternates_roles_and_seeds_each_turn():
    calls = []

    def fake_generate(prompts, seeds):  # records what the engine would get
        calls.append((prompts, seeds))
        return [Generation(f"out{len(calls)}-{s % 7}", 3, 2, "stop") for s in seeds]

    states = sa_sft.run_dialogues([("d1", "tea"), ("d2", "chess")], turns=2, template="prompts/self_dialogue.j2",
                                  recipe_dir=None, seed=1, generate_fn=fake_generate)
    assert len(calls) == 4  # user, assistant, user, assistant
    assert isinstance(calls[0][0][0], str) and isinstance(calls[1][0][0], list)  # instruction vs message list
    assert calls[1][0][0][-1]["role"] == "user" and "tea" in calls[0][0][0]
    assert len({s for _, seeds in calls for s in seeds}) == 8
    assert [m["role"] for m in states[0]["messages"]] == ["user", "assistant", "user", "assistant"]
    assert "out2" in calls[2][0][0]  # the second user turn sees the first reply in its history


# ----------------------------------------------------------------------------- S3FT
def judged(key: str, verdict: str, source: str) -> dict:
    return {"key": key, "prompt": "q", "response": f"{source} answer", "source": source, "judge_verdict": verdict,
            "meta": "{}"}


def test_s3ft_chooses_self_then_paraphrase_then_gold():
    answers = [judged("k0", "pass", "self"), judged("k1", "fail", "self"), judged("k2", "fail", "self")]
    paras = [judged("k1", "pass", "paraphrase"), judged("k2", "fail", "paraphrase")]
    rows, counts = s3ft.choose_targets(TASK[:3], answers, paras, "mixid")
    assert [r["source"] for r in rows] == ["self", "paraphrase", "gold"]
    assert counts == {"self": 1, "paraphrase": 1, "gold": 1}
    assert json.loads(rows[2]["meta"])["s3ft"] == {"self_verdict": "fail", "paraphrase_verdict": "fail"}
    assert rows[2]["response"] == TASK[2]["response"]


def test_s3ft_paraphrases_only_rejected_answers():
    answers = [judged("k0", "pass", "self"), judged("k1", "fail", "self")]
    items = s3ft.paraphrase_items(TASK[:2], answers, "prompts/paraphrase.j2", None, seed=0)
    assert [it.key for it in items] == ["k1"] and "#### 1" in items[0].prompt


# ----------------------------------------------------------------------------- SDFT
def test_sdft_rewrite_checks():
    kw = dict(leak_phrases=["reference answer"], check_final_number=True, answer_type="number")
    assert sdft.check_rewrite("So she has 5 apples. #### 5", "#### 5", "5", **kw)[0]
    ok, why = sdft.check_rewrite("As the reference answer says, 5.", "#### 5", "5", **kw)
    assert not ok and why["leaks"] == ["reference answer"]
    ok, why = sdft.check_rewrite("She has 6 apples.", "#### 5", "5", **kw)
    assert not ok and why["final"] == "6"
    assert not sdft.check_rewrite("", "#### 5", "5", **kw)[0]
    assert sdft.check_rewrite("six", "5", None, leak_phrases=[], check_final_number=True, answer_type="text")[0]


def test_sdft_one_row_per_example():
    rewrites = sdft.judge_rewrites(
        [{"key": "k0", "prompt": "q0", "response": "zero it is: 0", "source": "rewrite",
          "meta": json.dumps({"gold": "0", "gold_response": "#### 0"})},
         {"key": "k1", "prompt": "q1", "response": "Per the reference answer: 1", "source": "rewrite",
          "meta": json.dumps({"gold": "1", "gold_response": "#### 1"})}],
        {"leak_phrases": ["reference answer"], "check_final_number": True, "answer_type": "number"}, "j")
    rows, counts = sdft.choose_rewrites(TASK[:3], rewrites, "m")
    assert [r["source"] for r in rows] == ["rewrite", "gold", "gold"] and counts == {"rewrite": 1, "gold": 2}


# ----------------------------------------------------------------------------- replay, mix
def test_replay_is_seeded_capped_and_prefixed():
    pool = [{"key": f"r{i}", "prompt": f"p{i}", "response": f"a{i}", "meta": None} for i in range(10)]
    a, stats = sample_replay(pool, ratio=0.5, task_rows=6, seed=1, step_id="s")
    b, _ = sample_replay(list(reversed(pool)), ratio=0.5, task_rows=6, seed=1, step_id="s")
    assert [r["key"] for r in a] == [r["key"] for r in b] and len(a) == 3
    assert all(r["source"] == "replay" and r["key"].startswith("replay:") for r in a)
    c, _ = sample_replay(pool, ratio=0.5, task_rows=6, seed=2, step_id="s")
    assert [r["key"] for r in c] != [r["key"] for r in a]
    capped, stats = sample_replay(pool, ratio=5.0, task_rows=6, seed=1, step_id="s")
    assert len(capped) == 10 and stats["replay_wanted"] == 30


def test_mix_sa_sft_ratio_skips_excluded_and_is_deterministic():
    dialogues = [{"key": f"sa-{i}", "prompt": "u", "response": "a", "messages": "[]", "source": "self_dialogue",
                  "meta": json.dumps({"excluded": "truncated" if i % 3 == 0 else None})} for i in range(9)]
    rows, stats = mix_rows("sa_sft", {"ratio": 0.5}, TASK, {"generate.self_dialogue": dialogues}, seed=4, step_id="m")
    again, _ = mix_rows("sa_sft", {"ratio": 0.5}, TASK, {"generate.self_dialogue": dialogues[::-1]}, seed=4, step_id="m")
    assert rows == again
    assert stats["by_source"] == {"gold": 6, "self_dialogue": 3} and stats["dialogues_usable"] == 6
    assert all(not json.loads(r["meta"]).get("excluded") for r in rows if r["source"] == "self_dialogue")


def test_mix_none_is_the_task_rows():
    rows, stats = mix_rows("none", {}, TASK, {}, seed=0, step_id="m")
    assert [r["key"] for r in rows] == [t["key"] for t in TASK] and stats["by_source"] == {"gold": 6}

"""Generation steps on conversation rows (augment/conversation.py): the model sees the
conversation up to the turn it answers, the generated reply replaces that turn, the judge
compares against it; end to end through the planner and runner on a tiny random model."""

from __future__ import annotations

import json

import pytest

from tests.tiny_models import build_tiny_model

pytest.importorskip("torch")

from selfaug_compiler.augment import conversation as conv  # noqa: E402
from selfaug_compiler.augment import s3ft, sdft  # noqa: E402
from selfaug_compiler.compile.planner import PlanBuilder  # noqa: E402
from selfaug_compiler.recipe.schema import (  # noqa: E402
    ExecutionSpec, FieldMap, FileSource, Greedy, JudgeSpec, ModelSpec, Recipe, S3ftParams, SdftParams, TaskSpec,
)
from selfaug_compiler.runner import Runner, select_steps  # noqa: E402
from selfaug_compiler.store import open_store  # noqa: E402

SYSTEM = {"role": "system", "content": "You are a math tutor."}
CONVERSATIONS = [[SYSTEM, {"role": "user", "content": f"What is {a} + {b}?"},
                  {"role": "assistant", "content": f"{a} + {b} = {a + b}."},
                  {"role": "user", "content": f"Times 2? #### {2 * (a + b)}"},
                  {"role": "assistant", "content": f"It is {2 * (a + b)}.\n#### {2 * (a + b)}"}]
                 for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]]
ROW = {"key": "k", "prompt": None, "response": None, "messages": json.dumps(CONVERSATIONS[0]), "meta": None}


def test_prompt_is_the_conversation_up_to_the_target_with_the_template_in_the_last_user_turn():
    assert conv.question(ROW) == "Times 2? #### 6" and conv.target(ROW) == "It is 6.\n#### 6"
    (item,) = s3ft.answer_items([ROW], "prompts/self_answer.j2", None, seed=0)
    assert item.prompt == CONVERSATIONS[0][:4]  # the self-answer template is the question itself
    (rewrite,) = sdft.rewrite_items([ROW], "prompts/rewrite.j2", None, seed=0)
    assert rewrite.prompt[:3] == CONVERSATIONS[0][:3] and rewrite.prompt[3]["role"] == "user"
    assert "Times 2?" in rewrite.prompt[3]["content"] and "It is 6." in rewrite.prompt[3]["content"]
    assert len(rewrite.prompt) == 4
    assert json.loads(conv.payload(ROW, "6")["messages"]) == [*CONVERSATIONS[0][:4], {"role": "assistant", "content": "6"}]
    plain = {"prompt": "Q", "response": "A"}
    assert conv.prompt_for(plain, "rendered") == "rendered" and conv.payload(plain, "B") == {"prompt": "Q", "response": "B"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    build_tiny_model(root / "tiny")
    with open(root / "chat.jsonl", "w") as f:
        for i, messages in enumerate(CONVERSATIONS):
            f.write(json.dumps({"id": f"c{i}", "messages": messages}) + "\n")
    return root


def run_until_mix(root, augment, store):
    recipe = Recipe(name="conv", seed=7, model=ModelSpec(ref=str(root / "tiny"), dtype="float32"),
                    task=TaskSpec(name="chat", source=FileSource(path="chat.jsonl"), answer_type="number",
                                  fields=FieldMap(id="id")),
                    augment=augment, execution=ExecutionSpec(device="cpu", generate_batch_size=4))
    plan = PlanBuilder(recipe, root).build()
    runner = Runner(plan, store_path=store, recipe_dir=root, echo=lambda s: None)
    return runner.run(select_steps(plan, until=["mix"]))


def rows_of(store, summary, step, output="dataset"):
    with open_store(store) as s:
        return s.read(summary.result_of(step).datasets[output]).to_pylist()


def test_s3ft_on_conversations_keeps_the_context_and_judges_against_the_last_reply(workspace, tmp_path):
    store = tmp_path / "s.duckdb"
    short = Greedy(max_new_tokens=8)
    summary = run_until_mix(workspace, S3ftParams(answer=short, paraphrase=short, judge=JudgeSpec(kind="numeric"),
                                                  accept_truncated=True), store)
    task = {r["key"]: r for r in rows_of(store, summary, "ingest.chat", "train")}
    assert sorted(task) == ["c0", "c1", "c2", "c3"]
    answers = rows_of(store, summary, "judge.self_answer")
    assert len(answers) == len(CONVERSATIONS)
    for r in answers:
        messages = json.loads(r["messages"])
        gold = json.loads(task[r["key"]]["messages"])
        assert r["prompt"] is None and messages[:-1] == gold[:-1]  # system + earlier turns kept
        meta = json.loads(r["meta"])
        assert messages[-1] == {"role": "assistant", "content": meta["raw"].strip()} and r["response"] is None
        assert meta["gold_response"] == gold[-1]["content"] and meta["gold"] == gold[-1]["content"].split("#### ")[-1]
        assert r["judge_verdict"] in ("pass", "fail")
    mixed = rows_of(store, summary, "mix")
    assert len(mixed) == len(CONVERSATIONS) and all(json.loads(r["messages"])[0] == SYSTEM for r in mixed)


def test_sdft_on_conversations_rewrites_the_last_reply(workspace, tmp_path):
    store = tmp_path / "s.duckdb"
    summary = run_until_mix(workspace, SdftParams(sampling=Greedy(max_new_tokens=8)), store)
    judged = rows_of(store, summary, "judge.rewrite")
    assert len(judged) == len(CONVERSATIONS)
    for r in judged:
        messages = json.loads(r["messages"])
        assert messages[0] == SYSTEM and len(messages) == 5 and messages[-1]["role"] == "assistant"
        gold = CONVERSATIONS[int(r["key"][1:])]
        assert messages[:4] == gold[:4] and json.loads(r["meta"])["gold_response"] == gold[-1]["content"]
        # the tiny random model never reproduces the final number of the last reply: rejected
        assert r["judge_verdict"] == "fail"


def test_heldout_conversations_are_asked_up_to_their_last_reply(workspace, tmp_path):
    from selfaug_compiler.recipe.schema import EvalSpec, NoAugment, Split

    store = tmp_path / "s.duckdb"
    recipe = Recipe(name="convh", seed=7, model=ModelSpec(ref=str(workspace / "tiny"), dtype="float32"),
                    task=TaskSpec(name="chat", source=FileSource(path="chat.jsonl"), answer_type="number",
                                  fields=FieldMap(id="id"), split=Split(heldout=2)),
                    augment=NoAugment(), eval=EvalSpec(retention=[], in_domain=["heldout"], max_new_tokens=4),
                    execution=ExecutionSpec(device="cpu", eval_batch_size=2))
    plan = PlanBuilder(recipe, workspace).build()
    runner = Runner(plan, store_path=store, recipe_dir=workspace, echo=lambda s: None)
    name = next(s.name for s in plan.steps if s.name.startswith("eval.before.heldout"))
    summary = runner.run(select_steps(plan, until=[name]))
    metrics = summary.result_of(name).metrics
    assert metrics["n"] == 2 and metrics["gold_loss"] > 0
    with open_store(store) as s:
        _, items = s.get_eval(metrics["model_key"], metrics["fingerprint"])
    items = items.to_pylist()
    assert len(items) == 2
    for item in items:
        prompt = item["prompt"] if isinstance(item["prompt"], list) else json.loads(item["prompt"])
        assert prompt[0] == SYSTEM and len(prompt) == 4 and prompt[-1]["role"] == "user"
        assert item["gold"] in ("6", "14", "22", "30")

"""The generate/judge/mix steps end to end on a tiny random model and a real store, via the planner
and the runner: every method's data steps run, rows carry their source and provenance, and a
second run does no model work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny_models import build_tiny_model

pytest.importorskip("torch")

from selfaug_compiler.compile.planner import PlanBuilder  # noqa: E402
from selfaug_compiler.recipe.schema import (  # noqa: E402
    ExecutionSpec, FieldMap, FileSource, JudgeSpec, ModelSpec, Recipe, ReplayParams, S3ftParams, SaSftParams,
    Sampling, SdftParams, Greedy, TaskSpec,
)
from selfaug_compiler.runner import Runner, select_steps  # noqa: E402
from selfaug_compiler.store import open_store  # noqa: E402

QUESTIONS = [(f"Tom has {a} apples and buys {b} more. How many apples now?", f"{a} + {b} = {a + b}\n#### {a + b}")
             for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (2, 9), (4, 4)]]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    build_tiny_model(root / "tiny")
    with open(root / "toy.jsonl", "w") as f:
        for i, (q, a) in enumerate(QUESTIONS):
            f.write(json.dumps({"id": f"q{i}", "question": q, "answer": a}) + "\n")
    with open(root / "general.jsonl", "w") as f:
        for i in range(10):
            f.write(json.dumps({"question": f"Name a colour number {i}.", "answer": f"Colour {i} is blue."}) + "\n")
    return root


def recipe_for(root: Path, augment, name: str) -> Recipe:
    return Recipe(name=name, seed=7, model=ModelSpec(ref=str(root / "tiny"), dtype="float32"),
                  task=TaskSpec(name="toy", source=FileSource(path="toy.jsonl"), answer_type="number",
                                fields=FieldMap(prompt="question", response="answer", id="id")),
                  augment=augment, execution=ExecutionSpec(device="cpu", generate_batch_size=4))


def run_until_mix(root: Path, recipe: Recipe, store: Path):
    plan = PlanBuilder(recipe, root).build()
    runner = Runner(plan, store_path=store, recipe_dir=root, echo=lambda s: None)
    summary = runner.run(select_steps(plan, until=["mix"]))
    return plan, summary


def mix_rows(store_path: Path, summary) -> list[dict]:
    ref = summary.result_of("mix").datasets["dataset"]
    with open_store(store_path) as store:
        return store.read(ref).to_pylist()


def rows_of(store_path: Path, summary, step: str) -> list[dict]:
    with open_store(store_path) as store:
        return store.read(summary.result_of(step).datasets["dataset"]).to_pylist()


SHORT = Greedy(max_new_tokens=12)


def test_s3ft_end_to_end_and_cached_rerun(workspace, tmp_path):
    store = tmp_path / "store.duckdb"
    recipe = recipe_for(workspace, S3ftParams(answer=SHORT, paraphrase=SHORT), "s3")
    plan, summary = run_until_mix(workspace, recipe, store)
    rows = mix_rows(store, summary)
    assert len(rows) == len(QUESTIONS)
    assert {r["source"] for r in rows} <= {"self", "paraphrase", "gold"}
    answers = rows_of(store, summary, "judge.self_answer")
    assert len(answers) == len(QUESTIONS)
    for r in answers:
        assert r["source"] == "self" and r["judge_name"] == "numeric" and r["judge_verdict"] in ("pass", "fail")
        assert r["model_fingerprint"] and len(r["template_hash"]) == 64
        assert json.loads(r["sampling"])["max_new_tokens"] == 12 and r["seed"] is not None
        assert json.loads(r["meta"])["raw"] is not None and r["response_tokens"] >= 1
    failed = sum(r["judge_verdict"] == "fail" for r in answers)
    assert len(rows_of(store, summary, "generate.paraphrase")) == failed  # only the rejected get paraphrased
    _, again = run_until_mix(workspace, recipe, store)
    assert not again.ran and len(again.cached) == len(summary.outcomes)


def test_s3ft_embedding_judge_threshold_accepts_self(workspace, tmp_path):
    store = tmp_path / "store.duckdb"
    # the tiny random model's replies all run to the limit: accepted here so the judge alone decides
    aug = S3ftParams(answer=SHORT, paraphrase=SHORT, judge=JudgeSpec(kind="embedding", threshold=-1.0),
                     accept_truncated=True)
    _, summary = run_until_mix(workspace, recipe_for(workspace, aug, "s3e"), store)
    rows = mix_rows(store, summary)
    assert [r["source"] for r in rows] == ["self"] * len(QUESTIONS)
    assert all(r["judge_name"] == "embedding" and -1.0 <= r["judge_score"] <= 1.0001 for r in rows)


def test_sdft_rows_are_rewrite_or_gold(workspace, tmp_path):
    store = tmp_path / "store.duckdb"
    _, summary = run_until_mix(workspace, recipe_for(workspace, SdftParams(sampling=SHORT), "sd"), store)
    rows = mix_rows(store, summary)
    assert len(rows) == len(QUESTIONS) and {r["source"] for r in rows} <= {"rewrite", "gold"}
    judged = rows_of(store, summary, "judge.rewrite")
    # the tiny random model never reproduces the final number: every rewrite is rejected, gold kept
    assert all(r["judge_verdict"] == "fail" for r in judged)
    assert all(r["source"] == "gold" and "sdft_rejected" in json.loads(r["meta"]) for r in rows)


def test_sa_sft_multi_turn_dialogues_and_ratio(workspace, tmp_path, capsys):
    store = tmp_path / "store.duckdb"
    aug = SaSftParams(n_dialogues=4, ratio=0.5, turns=2, topics=["tea", "chess"], max_repetition=1.0,
                      sampling=Sampling(max_new_tokens=6))
    _, summary = run_until_mix(workspace, recipe_for(workspace, aug, "sa"), store)
    dialogues = rows_of(store, summary, "generate.self_dialogue")
    assert len(dialogues) == 4
    for d in dialogues:
        messages = json.loads(d["messages"])
        assert [m["role"] for m in messages] == ["user", "assistant"] * 2
        meta = json.loads(d["meta"])
        assert meta["topic"] in ("tea", "chess") and len(meta["raw"]) == 4
        assert json.loads(d["sampling"]) == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 6}
    rows = mix_rows(store, summary)
    by_source = {s: sum(r["source"] == s for r in rows) for s in ("gold", "self_dialogue")}
    usable = sum(1 for d in dialogues if not json.loads(d["meta"])["excluded"])
    assert by_source == {"gold": len(QUESTIONS), "self_dialogue": min(usable, round(0.5 * len(QUESTIONS)))}
    # the tiny model's turns run to 6 tokens: dialogues are refused as cut off, and the mix says it
    # came up short of the ratio and how to make up for it
    wanted = round(0.5 * len(QUESTIONS))
    assert usable < wanted, usable
    assert (f"only {by_source['self_dialogue']} of the {wanted} self-dialogues augment.ratio asks for were usable "
            f"(raise augment.n_dialogues above {wanted}") in capsys.readouterr().out


def test_replay_mixes_file_rows_at_ratio(workspace, tmp_path):
    store = tmp_path / "store.duckdb"
    aug = ReplayParams(source=FileSource(path="general.jsonl"), ratio=1.5)
    _, summary = run_until_mix(workspace, recipe_for(workspace, aug, "rp"), store)
    rows = mix_rows(store, summary)
    replay = [r for r in rows if r["source"] == "replay"]
    assert len(replay) == 9 and all(r["key"].startswith("replay:") for r in replay)
    assert sum(r["source"] == "gold" for r in rows) == len(QUESTIONS)


def test_continual_sa_sft_stages_share_one_dialogue_generation(workspace, tmp_path):
    """With n_dialogues set, the task's rows play no part in the dialogues: every stage of a
    continual recipe reads the same generation (one step id, run once), and each stage's mix
    still adds them to its own task."""
    from selfaug_compiler.recipe.schema import StageSpec

    aug = SaSftParams(n_dialogues=3, ratio=0.5, topics=["tea", "chess"], max_repetition=1.0,
                      sampling=Sampling(max_new_tokens=6))
    task = recipe_for(workspace, aug, "x").task
    other = task.model_copy(update={"name": "toy2"})
    recipe = recipe_for(workspace, aug, "cont").model_copy(update={"task": None, "stages": [
        StageSpec(task=task), StageSpec(task=other)]})
    plan = PlanBuilder(recipe, workspace).build()
    first, second = plan.step("generate.self_dialogue.s0"), plan.step("generate.self_dialogue.s1")
    assert first.id == second.id and first.inputs == second.inputs == []
    runner = Runner(plan, store_path=tmp_path / "store.duckdb", recipe_dir=workspace, echo=lambda s: None)
    summary = runner.run(select_steps(plan, until=["mix.s0", "mix.s1"]))
    status = {o.step.name: o.status for o in summary.outcomes}
    assert status["generate.self_dialogue.s0"] == "done" and status["generate.self_dialogue.s1"] == "cached"
    with open_store(tmp_path / "store.duckdb") as store:
        for mix in ("mix.s0", "mix.s1"):
            rows = store.read(summary.result_of(mix).datasets["dataset"]).to_pylist()
            assert sum(r["source"] == "gold" for r in rows) == len(QUESTIONS)
    # without n_dialogues the count follows the task (ratio x rows): the task stays an input
    sized = recipe.model_copy(update={"augment": aug.model_copy(update={"n_dialogues": None})})
    sized_plan = PlanBuilder(sized, workspace).build()
    assert sized_plan.step("generate.self_dialogue.s1").inputs == ["ingest.toy2.s1"]

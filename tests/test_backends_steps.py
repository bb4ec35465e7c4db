"""Generate and judge steps through the openai backend against the local stub server
(tests/test_backends_openai_stub.py): rows name the backend and what the server reported, a server
failing mid-step stops it with one StepFailed keeping the staged batches, the same run resumes;
the server's URL and concurrency are speed (step ids unchanged), the served model name is content."""

from __future__ import annotations

import json

import pytest

from tests.test_backends_openai_stub import StubServer
from tests.test_augment_steps import QUESTIONS, SHORT, recipe_for, rows_of, run_until_mix, workspace  # noqa: F401

pytest.importorskip("torch")

from selfaug_compiler.compile.planner import PlanBuilder  # noqa: E402
from selfaug_compiler.errors import StepFailed  # noqa: E402
from selfaug_compiler.recipe.schema import ModelSpec, S3ftParams  # noqa: E402
from selfaug_compiler.store import open_store  # noqa: E402


def served(root, stub_url: str, name: str = "s3srv", **backend):
    recipe = recipe_for(root, S3ftParams(answer=SHORT, paraphrase=SHORT), name)
    spec = {"kind": "openai", "served_model": "stub-model", "base_url": stub_url, "max_retries": 1,
            "backoff_s": 0.01, "request_timeout_s": 2, **backend}
    return recipe.model_copy(update={"model": ModelSpec(ref=recipe.model.ref, dtype="float32", backend=spec)})


def ids(plan) -> dict[str, str]:
    return {s.name: s.id for s in plan.steps}


def test_step_ids_speed_vs_content(workspace):  # noqa: F811
    a = ids(PlanBuilder(served(workspace, "http://a/v1"), workspace).build())
    b = ids(PlanBuilder(served(workspace, "http://b/v1", max_concurrency=3), workspace).build())
    c = ids(PlanBuilder(served(workspace, "http://a/v1", served_model="other"), workspace).build())
    local = ids(PlanBuilder(recipe_for(workspace, S3ftParams(answer=SHORT, paraphrase=SHORT), "s3srv"), workspace).build())
    assert a == b
    assert a["generate.self_answer"] != c["generate.self_answer"] != local["generate.self_answer"]
    assert a["ingest.toy"] == local["ingest.toy"]


def test_rows_name_backend_and_failure_resumes(workspace, tmp_path):  # noqa: F811
    stub = StubServer()
    try:
        store = tmp_path / "store.duckdb"
        recipe = served(workspace, stub.url)
        stub.script = ["ok"] * 4 + ["500"] * 50  # the first batch of 4 lands, then the server fails
        with pytest.raises(StepFailed, match="no answer after 2 attempts") as err:
            run_until_mix(workspace, recipe, store)
        assert "4 rows of this attempt are staged" in str(err.value)
        step_id = ids(PlanBuilder(recipe, workspace).build())["generate.self_answer"]
        with open_store(store) as s:
            assert len(s.staged(step_id)) == 4
        stub.script = []
        before = len(stub.bodies)
        plan, summary = run_until_mix(workspace, recipe, store)
        answers = rows_of(store, summary, "judge.self_answer")
        assert len(answers) == len(QUESTIONS) and len({r["key"] for r in answers}) == len(QUESTIONS)
        first_resumed = stub.bodies[before]
        assert first_resumed["model"] == "stub-model"
        for r in answers:
            backend = json.loads(r["meta"])["backend"]
            assert backend == {"backend": "openai", "model": "stub-model", "mode": "chat", "batch_invariant": False,
                               "served_model": "stub-model", "system_fingerprint": "fp_stub"}
            assert r["response"].startswith("echo ")
    finally:
        stub.server.shutdown()


def test_model_judge_on_its_own_served_model(workspace, tmp_path):  # noqa: F811
    """Self-answers from the local tiny model, the model judge on another model behind a server."""
    from selfaug_compiler.recipe.schema import JudgeSpec

    stub = StubServer()
    try:
        base = recipe_for(workspace, S3ftParams(answer=SHORT, paraphrase=SHORT), "s3judge")
        judge_model = ModelSpec(ref=str(workspace / "tiny"), backend={
            "kind": "openai", "served_model": "judge-model", "base_url": stub.url, "max_retries": 0})
        aug = dict(answer=SHORT, paraphrase=SHORT, accept_truncated=True)  # the tiny model's replies run to the limit
        own = base.model_copy(update={"augment": S3ftParams(**aug, judge=JudgeSpec(kind="model", model=judge_model))})
        same = base.model_copy(update={"augment": S3ftParams(**aug, judge=JudgeSpec(kind="model"))})
        a, b = ids(PlanBuilder(own, workspace).build()), ids(PlanBuilder(same, workspace).build())
        assert a["generate.self_answer"] == b["generate.self_answer"] and a["judge.self_answer"] != b["judge.self_answer"]
        store = tmp_path / "store.duckdb"
        _, summary = run_until_mix(workspace, own, store)
        judged = rows_of(store, summary, "judge.self_answer")
        assert len(judged) == len(QUESTIONS)
        assert "meta" in judged[0] and "backend" not in json.loads(judged[0]["meta"])  # answers: local engine
        assert {body["model"] for body in stub.bodies} == {"judge-model"}
        assert len(stub.bodies) >= len(QUESTIONS)
        assert all("echo" in r["judge_raw"] for r in judged), judged[0]["judge_raw"]  # the served judge's raw reply
        for r in judged:  # which model judged, and what the server reported (the stub names itself stub-model)
            assert json.loads(r["meta"])["judge_model"] == {
                "backend": "openai", "model": "judge-model", "mode": "chat", "batch_invariant": False,
                "served_model": "stub-model", "system_fingerprint": "fp_stub"}
    finally:
        stub.server.shutdown()


def test_model_judge_on_a_second_in_process_model(workspace, tmp_path):  # noqa: F811
    """Self-answers from one tiny model, the verdicts from another one loaded in-process: the judge
    step loads the judge's own weights, and each judged row names them (ref and fingerprint)."""
    from selfaug_compiler.models.fingerprint import folder_fingerprint
    from selfaug_compiler.recipe.schema import JudgeSpec
    from tests.tiny_models import build_tiny_model

    other = build_tiny_model(tmp_path / "judge-tiny", seed=1)
    base = recipe_for(workspace, S3ftParams(answer=SHORT, paraphrase=SHORT), "s3judge2")
    aug = dict(answer=SHORT, paraphrase=SHORT, accept_truncated=True)
    recipe = base.model_copy(update={"augment": S3ftParams(**aug, judge=JudgeSpec(
        kind="model", model=ModelSpec(ref=str(other), dtype="float32")))})
    same = base.model_copy(update={"augment": S3ftParams(**aug, judge=JudgeSpec(kind="model"))})
    store = tmp_path / "store.duckdb"
    _, summary = run_until_mix(workspace, recipe, store)
    _, own = run_until_mix(workspace, same, tmp_path / "same.duckdb")
    judged = rows_of(store, summary, "judge.self_answer")
    by_self = {r["key"]: r for r in rows_of(tmp_path / "same.duckdb", own, "judge.self_answer")}
    assert len(judged) == len(QUESTIONS)
    for r in judged:
        meta = json.loads(r["meta"])
        assert "backend" not in meta  # the answers: the recipe's model, in-process
        assert meta["judge_model"] == {"backend": "transformers", "batch_invariant": True, "model": str(other),
                                       "fingerprint": folder_fingerprint(other)}
        mine = json.loads(by_self[r["key"]]["meta"])["judge_model"]
        assert mine["model"] == str(workspace / "tiny") and mine["fingerprint"] != meta["judge_model"]["fingerprint"]
        assert r["response"] == by_self[r["key"]]["response"]  # the same answers, judged by other weights
    # two different random models: their raw replies differ somewhere
    assert [r["judge_raw"] for r in judged] != [by_self[r["key"]]["judge_raw"] for r in judged]


def test_sa_sft_dialogues_on_the_served_backend(workspace, tmp_path):  # noqa: F811
    from selfaug_compiler.recipe.schema import Sampling, SaSftParams

    stub = StubServer()
    try:
        base = served(workspace, stub.url, name="sasrv")
        aug = SaSftParams(n_dialogues=4, ratio=0.5, turns=2, topics=["tea", "chess"], max_repetition=1.0,
                          sampling=Sampling(max_new_tokens=6))
        # chunks of 2 dialogues, 2 turns of (user, assistant): 8 requests a chunk; the first chunk lands
        stub.script = ["ok"] * 8 + ["500"] * 50
        execution = base.execution.model_copy(update={"generate_batch_size": 2})
        recipe = base.model_copy(update={"augment": aug, "execution": execution})
        store = tmp_path / "store.duckdb"
        with pytest.raises(StepFailed, match="no answer after 2 attempts"):
            run_until_mix(workspace, recipe, store)
        with open_store(store) as s:
            assert len(s.staged(ids(PlanBuilder(recipe, workspace).build())["generate.self_dialogue"])) == 2
        stub.script = []
        before = len(stub.bodies)
        _, summary = run_until_mix(workspace, recipe, store)
        dialogues = rows_of(store, summary, "generate.self_dialogue")
        assert len(dialogues) == 4 and len({d["key"] for d in dialogues}) == 4
        for d in dialogues:
            assert [m["role"] for m in json.loads(d["messages"])] == ["user", "assistant"] * 2
            assert json.loads(d["meta"])["backend"]["backend"] == "openai"
        assert all(body["model"] == "stub-model" for body in stub.bodies)
        assert len(stub.bodies) - before == 8  # only the dialogues not staged
    finally:
        stub.server.shutdown()

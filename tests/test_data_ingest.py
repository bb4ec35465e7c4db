"""The ingest step with a hand-built StepContext."""

from __future__ import annotations

import json

import pytest

from selfaug_compiler.data.ingest import execute, final_number, split_rows
from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.plan import Plan, Step
from selfaug_compiler.recipe.schema import PackagedSource, Split, TaskSpec, content_view, FileSource
from selfaug_compiler.runtime import StepContext
from selfaug_compiler.store import open_store


def make_ctx(tmp_path, store, task: TaskSpec) -> StepContext:
    step = Step(name="ingest.gsm8k", kind="ingest", params={"task": content_view(task)},
                outputs={"train": f"{task.name}-train", "heldout": f"{task.name}-heldout"})
    plan = Plan(recipe_name="t", recipe_hash="rh", steps=[step])
    plan.assign_ids()
    return StepContext(plan=plan, step=step, store=store, work_dir=tmp_path / "work", recipe_dir=tmp_path)


def test_ingest_packaged_gsm8k_split(tmp_path):
    task = TaskSpec(name="gsm8k", source=PackagedSource(name="gsm8k"), answer_type="number",
                    split=Split(train=200, heldout=50, seed=7))
    with open_store(tmp_path / "s.duckdb") as store:
        ctx = make_ctx(tmp_path, store, task)
        result = execute(ctx)
        train = store.read(result.datasets["train"])
        held = store.read(result.datasets["heldout"])
        assert (train.num_rows, held.num_rows) == (200, 50)
        assert not set(train["key"].to_pylist()) & set(held["key"].to_pylist())
        assert set(train["source"].to_pylist()) == {"gold"}
        assert set(train["step_id"].to_pylist()) == {ctx.step.id}
        metas = [json.loads(m) for m in held["meta"].to_pylist() + train["meta"].to_pylist()]
        assert all(m["gold"] == m["short_answer"].replace(",", "") for m in metas)
        v = store.resolve(result.datasets["train"])
        assert v.step_id == ctx.step.id and v.recipe_hash == "rh"
        # a second run is a cache hit: same versions, nothing new
        again = execute(ctx)
        assert again.datasets == result.datasets and again.metrics["cached"] is True
        assert len(store.log("gsm8k-train")) == 1


def test_split_is_deterministic_and_seeded(tmp_path):
    from selfaug_compiler.data.sources import load_rows

    rows = load_rows("packaged:arc_easy")
    a = split_rows(rows, train=100, heldout=20, seed=1)
    b = split_rows(rows, train=100, heldout=20, seed=1)
    c = split_rows(rows, train=100, heldout=20, seed=2)
    assert a[1]["key"].to_pylist() == b[1]["key"].to_pylist() != c[1]["key"].to_pylist()
    assert split_rows(rows, train=None, heldout=20, seed=1)[0].num_rows == 550
    with pytest.raises(SelfaugError, match="split asks for"):
        split_rows(rows, train=600, heldout=20, seed=1)


def test_ingest_file_with_fields(tmp_path):
    (tmp_path / "task.jsonl").write_text("\n".join(json.dumps({"n": i, "q": f"q{i}", "a": f"x {i}.0"}) for i in range(10)))
    task = TaskSpec(name="mine", source=FileSource(path="task.jsonl"), answer_type="number",
                    fields={"prompt": "q", "response": "a", "id": "n"}, split=Split(heldout=3))
    with open_store(tmp_path / "s.duckdb") as store:
        result = execute(make_ctx(tmp_path, store, task))
        assert result.metrics["train_rows"] == 7 and result.metrics["heldout_rows"] == 3
        rows = store.read(result.datasets["train"]).to_pylist()
        assert all(json.loads(r["meta"])["gold"] == r["key"] for r in rows)


def test_final_number():
    assert final_number("so 3 + 4 = 7\n#### 1,234") == "1234"
    assert final_number("the answer is 42.") == "42"
    assert final_number("-3.50 dollars") == "-3.50"
    assert final_number("no number") is None

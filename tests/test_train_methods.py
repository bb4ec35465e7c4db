"""full / lora / freeze on a tiny random model: which weights move, and the artifacts."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.models.fingerprint import folder_fingerprint
from selfaug_compiler.models.loading import ARTIFACT_META, load_model
from selfaug_compiler.recipe.schema import TrainSpec
from selfaug_compiler.train.launch import train_model
from selfaug_compiler.train.methods import apply_method, parse_layers
from selfaug_compiler.train.tiny import build_tiny_model

ROWS = [{"prompt": f"What is {i} plus {i + 1}?", "response": f"The answer is {2 * i + 1}."} for i in range(16)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", layers=3)


def base_weights(base):
    return load_file(str(base / "model.safetensors"))


def train(base, tmp_path, **spec):
    spec = TrainSpec(lr=5e-3, epochs=1, batch_size=8, max_length=64, warmup_ratio=0.0, **spec)
    return train_model(str(base), ROWS, spec, tmp_path / "run", micro_batch_size=4, dtype="float32",
                       show_progress=False, dataset_ref="tiny-mix@1")


def test_parse_layers_forms_and_errors():
    assert parse_layers("0-3", 8) == [0, 1, 2, 3]
    assert parse_layers("0,2,4-6", 8) == [0, 2, 4, 5, 6]
    assert parse_layers([1, 3], 8) == [1, 3]
    with pytest.raises(SelfaugError, match="out of range") as err:
        parse_layers("0-15", 4)
    assert "0-3" in str(err.value)
    with pytest.raises(SelfaugError, match="cannot read"):
        parse_layers("a-b", 4)
    with pytest.raises(SelfaugError, match="cannot read"):
        parse_layers("5-2", 8)


def test_lora_unknown_target_lists_available_modules(base):
    model = load_model(str(base), dtype="float32").model
    with pytest.raises(SelfaugError) as err:
        apply_method(model, TrainSpec(method="lora", lora={"target_modules": ["q_proj", "query_key_value"]}))
    text = str(err.value)
    assert "query_key_value" in text and "q_proj" in text and "down_proj" in text


def test_full_changes_every_weight_and_reloads(base, tmp_path):
    outcome = train(base, tmp_path, method="full")
    assert outcome.completed and outcome.metrics["trainable_params"] == outcome.metrics["total_params"]
    before, after = base_weights(base), load_file(str(outcome.model_dir / "model.safetensors"))
    assert before.keys() == after.keys()
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert unchanged == []
    meta = json.loads((outcome.model_dir / ARTIFACT_META).read_text())
    assert meta["method"] == "full" and meta["dataset"] == "tiny-mix@1"
    assert meta["base_model"] == str(base.resolve()) and meta["fingerprint"] == outcome.fingerprint
    assert folder_fingerprint(outcome.model_dir) == outcome.fingerprint
    assert meta["train_params"]["lr"] == 5e-3
    reloaded = load_model(str(outcome.model_dir), dtype="float32")
    assert reloaded.fingerprint == outcome.fingerprint


def test_lora_changes_only_adapter_weights_and_loads_through_load_model(base, tmp_path):
    outcome = train(base, tmp_path, method="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0,
                                                          "target_modules": ["q_proj", "v_proj"]})
    folder = outcome.model_dir
    assert (folder / "adapter_config.json").is_file() and not (folder / "model.safetensors").exists()
    adapter = load_file(str(folder / "adapter_model.safetensors"))
    assert adapter and all("lora_" in name for name in adapter)
    assert outcome.metrics["trainable_params"] == sum(t.numel() for t in adapter.values())
    assert any(torch.count_nonzero(t) for name, t in adapter.items() if "lora_B" in name)  # B started at zero
    merged = load_model(str(folder), dtype="float32").model
    base_model = load_model(str(base), dtype="float32").model
    merged_sd, base_sd = merged.state_dict(), base_model.state_dict()
    changed = {name for name in base_sd if not torch.equal(base_sd[name], merged_sd[name])}
    assert changed and all(("q_proj" in n or "v_proj" in n) for n in changed)
    assert json.loads((folder / ARTIFACT_META).read_text())["base_model"] == str(base.resolve())


def test_freeze_leaves_frozen_layers_bit_identical(base, tmp_path):
    outcome = train(base, tmp_path, method="freeze", freeze={"layers": "0,2", "embeddings": True})
    assert outcome.metrics["frozen_layers"] == [0, 2]
    before, after = base_weights(base), load_file(str(outcome.model_dir / "model.safetensors"))
    for name in before:
        frozen = name.startswith(("model.layers.0.", "model.layers.2.", "model.embed_tokens"))
        same = torch.equal(before[name], after[name])
        assert same == frozen, name
    assert 0 < outcome.metrics["trainable_params"] < outcome.metrics["total_params"]


def test_freeze_out_of_range_is_a_user_error(base, tmp_path):
    with pytest.raises(SelfaugError, match="out of range"):
        train(base, tmp_path, method="freeze", freeze={"layers": "0-15"})

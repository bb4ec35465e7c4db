"""Model references, fingerprints, adapters and dtype resolution on tiny local models."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from selfaug_compiler.errors import SelfaugError  # noqa: E402
from selfaug_compiler.models import loading  # noqa: E402
from selfaug_compiler.models.fingerprint import SIDE_CAR, folder_fingerprint  # noqa: E402
from selfaug_compiler.models.loading import load_model, resolve_dtype  # noqa: E402
from selfaug_compiler.models.reference import parse_ref, static_fingerprint  # noqa: E402
from tests.tiny_models import build_tiny_model  # noqa: E402


@pytest.fixture()
def tiny(tmp_path):
    return build_tiny_model(tmp_path / "tiny")


def test_local_folder_loads_in_eval_mode_with_tokenizer(tiny):
    loaded = load_model(str(tiny), dtype="float32", device="cpu")
    assert loaded.model.training is False
    assert loaded.dtype == torch.float32 and next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.tokenizer.pad_token is not None and loaded.tokenizer.chat_template
    assert loaded.folder == tiny and len(loaded.fingerprint) == 24
    assert parse_ref(str(tiny)).kind == "local"


def test_relative_ref_and_missing_folder(tmp_path, tiny):
    assert parse_ref("tiny", base_dir=tmp_path).name == str(tiny)
    with pytest.raises(SelfaugError, match="config.json"):
        load_model(str(tmp_path), device="cpu")
    with pytest.raises(SelfaugError, match="unknown packaged model"):
        parse_ref("packaged:nope")


def test_fingerprint_stable_and_changes_with_weights(tiny, tmp_path):
    first = folder_fingerprint(tiny)
    assert folder_fingerprint(tiny) == first and (tiny / SIDE_CAR).is_file()
    (tiny / SIDE_CAR).unlink()
    assert folder_fingerprint(tiny) == first  # recomputed from the bytes: same answer
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert folder_fingerprint(other) != first
    static = static_fingerprint(parse_ref(str(tiny)))
    loaded = load_model(str(tiny), dtype="float32", device="cpu")
    with torch.no_grad():
        loaded.model.lm_head.weight.mul_(2.0)
    time.sleep(0.01)
    loaded.model.save_pretrained(tiny)
    assert folder_fingerprint(tiny) != first  # the sidecar stamp changed, so the weights were re-hashed
    assert static_fingerprint(parse_ref(str(tiny))) == static  # cheap id ignores weight bytes (same size)


def test_adapter_folder_loads_merged_onto_its_base(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = load_model(str(tiny), dtype="float32", device="cpu")
    peft_model = get_peft_model(base.model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    (adapter / loading.ARTIFACT_META).write_text(json.dumps({"base_model": str(tiny)}))
    merged = load_model(str(adapter), dtype="float32", device="cpu")
    plain = load_model(str(tiny), dtype="float32", device="cpu")
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        delta = (merged.model(ids).logits - plain.model(ids).logits).abs().max()
    assert delta > 1e-4  # the adapter changed the model
    assert merged.fingerprint != plain.fingerprint and merged.folder == adapter
    assert not any("lora" in n for n, _ in merged.model.named_parameters())


def test_dtype_resolution_follows_forced_cpu_bf16(monkeypatch):
    for forced, expected in (("1", torch.bfloat16), ("0", torch.float32)):
        monkeypatch.setenv("SELFAUG_CPU_BF16", forced)
        loading.cpu_has_fast_bf16.cache_clear()
        assert resolve_dtype("auto", "cpu") == expected
    loading.cpu_has_fast_bf16.cache_clear()
    assert resolve_dtype("float16", "cpu") == torch.float16


def test_auto_dtype_model_really_loads_in_bf16(tiny, monkeypatch):
    monkeypatch.setenv("SELFAUG_CPU_BF16", "1")
    loading.cpu_has_fast_bf16.cache_clear()
    try:
        loaded = load_model(str(tiny), device="cpu")
    finally:
        loading.cpu_has_fast_bf16.cache_clear()
    assert next(loaded.model.parameters()).dtype == torch.bfloat16

"""The training-memory estimate follows what the run loads (issue 13.4): weight dtype, sharding
strategy, optimizer states, gradient checkpointing, LoRA/QLoRA; checked on the 8B fixture against
the ZeRO paper's model-state formulas (Rajbhandari et al. 2020: (2 + 2 + K) x params, sharded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfaug_compiler.compile.model_info import read_model_info
from selfaug_compiler.compile.train_memory import train_memory
from selfaug_compiler.recipe.schema import TrainSpec

EIGHT_B = Path(__file__).parents[1] / "recipes" / "scale" / "models" / "llama-3.1-8b"


def states(spec: dict, world: int = 8, dtype: str = "bfloat16") -> float:
    """Weights + gradients + optimizer, bytes per process."""
    info = read_model_info(str(EIGHT_B))
    parts = train_memory(info, TrainSpec(**spec), dtype, "cuda", 4, 2048, world)
    return parts["weights"] + parts["gradients"] + parts["optimizer"]


def test_8b_model_states_match_the_zero_formulas() -> None:
    params = read_model_info(str(EIGHT_B)).approx_params()
    assert 8.0e9 < params < 8.1e9  # Llama-3.1-8B: 8.03B
    bf16 = {"weight_dtype": "bf16"}
    # bf16 weights, gradients and AdamW moments (torch AdamW allocates them like the parameter)
    assert states({**bf16, "strategy": "ddp"}) == pytest.approx(8 * params)
    assert states({**bf16, "strategy": "zero2"}) == pytest.approx(2 * params + 6 * params / 8)
    assert states({**bf16, "strategy": "zero3"}) == pytest.approx(8 * params / 8)
    assert states({**bf16, "strategy": "fsdp"}) == states({**bf16, "strategy": "zero3"})
    # fp32 weights (the fp32 master copy of mixed precision): 16 bytes a parameter, ~128 GB for 8B
    assert states({"strategy": "ddp"}) == pytest.approx(16 * params)
    assert 125e9 < states({"strategy": "ddp"}) < 131e9
    assert states({"strategy": "fsdp"}, world=16) == pytest.approx(16 * params / 16)


def test_optimizer_checkpointing_lora_qlora() -> None:
    info = read_model_info(str(EIGHT_B))
    params = info.approx_params()
    adam = train_memory(info, TrainSpec(weight_dtype="bf16"), "bfloat16", "cuda", 4, 2048)
    adam8 = train_memory(info, TrainSpec(weight_dtype="bf16", optimizer="adamw_8bit"), "bfloat16", "cuda", 4, 2048)
    assert adam["optimizer"] == 4 * params and adam8["optimizer"] == pytest.approx(2.1 * params)
    fp32 = train_memory(info, TrainSpec(), "bfloat16", "cuda", 4, 2048)
    assert fp32["optimizer"] == 8 * params and fp32["weights"] == fp32["gradients"] == 4 * params
    ckpt = train_memory(info, TrainSpec(weight_dtype="bf16", gradient_checkpointing=True), "bfloat16", "cuda", 4, 2048)
    assert ckpt["activations"] < adam["activations"] / 10  # a layer's input instead of ~17 tensors per layer
    lora = TrainSpec(method="lora", weight_dtype="bf16")
    qlora = TrainSpec(method="lora", lora={"load_in_4bit": True})
    lo = train_memory(info, lora, "bfloat16", "cuda", 4, 2048)
    q = train_memory(info, qlora, "bfloat16", "cuda", 4, 2048)
    assert lo["gradients"] + lo["optimizer"] < params * 12 / 1000  # adapters only
    assert lo["weights"] == pytest.approx(2 * params, rel=0.01)
    assert 0.3 * lo["weights"] < q["weights"] < 0.45 * lo["weights"]  # 4-bit layers, 16-bit embeddings and head


def test_validate_prints_per_process_memory(capsys: pytest.CaptureFixture[str]) -> None:
    from selfaug_compiler.cli import main

    assert main(["validate", str(EIGHT_B.parents[1] / "fsdp-8gpu.yaml")]) == 0
    out = capsys.readouterr().out
    assert "to train per process (of 8)" in out and "optimizer 3.74" in out

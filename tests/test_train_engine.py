"""The engine honours train.weight_dtype, gradient_checkpointing, optimizer, QLoRA and strategy;
what cannot run here fails with the reason (never a silent fallback). CUDA-only checks are marked
``cuda`` and skip without a CUDA device."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from safetensors.torch import load_file

from selfaug_compiler.compile.launch_files import local_settings
from selfaug_compiler.errors import StepFailed
from selfaug_compiler.recipe.schema import TrainSpec
from selfaug_compiler.train.launch import train_model
from selfaug_compiler.train.tiny import build_tiny_model

ROWS = [{"prompt": f"What is {i} plus {i + 1}?", "response": f"The answer is {2 * i + 1}."} for i in range(16)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


def spec(**kw):
    values = dict(lr=5e-3, epochs=1, batch_size=8, max_length=64, warmup_ratio=0.0, save_every_steps=100)
    values.update(kw)
    return TrainSpec(**values)


def run(base, out, train_spec, device="cpu", **kw):
    return train_model(str(base), ROWS, train_spec, out, dtype=kw.pop("dtype", "float32"), device=device,
                       micro_batch_size=4, show_progress=False, seed=1, **kw)


def weights(outcome, name="model.safetensors"):
    return load_file(str(outcome.model_dir / name))


def test_gradient_checkpointing_gives_the_same_weights(base, tmp_path):
    plain = run(base, tmp_path / "plain", spec())
    ckpt = run(base, tmp_path / "ckpt", spec(gradient_checkpointing=True))
    a, b = weights(plain), weights(ckpt)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)


def test_bf16_weights_are_held_and_saved_in_bf16(base, tmp_path):
    outcome = run(base, tmp_path / "bf16", spec(weight_dtype="bf16", lr=2e-2, epochs=3))
    assert outcome.metrics["weight_dtype"] == "bfloat16" and outcome.metrics["compute_dtype"] == "bfloat16"
    assert {t.dtype for t in weights(outcome).values()} == {torch.bfloat16}
    assert outcome.metrics["train_loss_last"] < outcome.metrics["train_loss_first"]


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_8bit_adamw_without_bitsandbytes_fails_with_the_reason(base, tmp_path):
    with pytest.raises(StepFailed, match="adamw_8bit needs bitsandbytes"):
        run(base, tmp_path / "a", spec(optimizer="adamw_8bit"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_qlora_without_cuda_fails_with_the_reason(base, tmp_path):
    qlora = spec(method="lora", lora={"r": 4, "load_in_4bit": True})
    with pytest.raises(StepFailed, match="needs a CUDA device"):
        run(base, tmp_path / "q", qlora)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_fsdp_on_cpu_is_refused_not_run_as_ddp(base, tmp_path):
    """accelerate 1.15 leaves its FSDP plugin out on CPU (MULTI_CPU): the run must say so."""
    launch = dict(local_settings(2, "cpu"), strategy="fsdp")
    with pytest.raises(StepFailed, match="strategy fsdp was not set up by accelerate"):
        run(base, tmp_path / "f", spec(strategy="fsdp"), num_processes=2, launch=launch)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_save_state_checkpoints_resume_exactly(base, tmp_path, monkeypatch, method):
    """The FSDP/ZeRO checkpoint path (accelerate save_state/load_state), taken under DDP on CPU:
    stopped after 3 steps and resumed, the run ends where an uninterrupted one does."""
    monkeypatch.setenv("SELFAUG_TRAIN_SAVE_STATE", "1")
    lora = {"lora": {"r": 4, "dropout": 0.2}} if method == "lora" else {}
    train_spec = spec(method=method, epochs=2, save_every_steps=2, **lora)
    straight = run(base, tmp_path / "straight", train_spec)
    stopped = run(base, tmp_path / "resumed", train_spec, max_steps=3)
    assert not stopped.completed
    saved = tmp_path / "resumed" / "checkpoints" / "step-000003"
    assert (saved / "accelerate").is_dir() and not (saved / "trainable.safetensors").exists()
    resumed = run(base, tmp_path / "resumed", train_spec)
    name = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    a, b = weights(straight, name), weights(resumed, name)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)


def test_save_state_checkpoints_two_processes_resume_to_the_one_process_result(base, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFAUG_TRAIN_SAVE_STATE", "1")  # the workers inherit it
    train_spec = spec(epochs=2, save_every_steps=2)
    one = run(base, tmp_path / "one", train_spec)
    stopped = run(base, tmp_path / "two", train_spec, num_processes=2, max_steps=3)
    assert not stopped.completed
    saved = tmp_path / "two" / "checkpoints" / "step-000003" / "accelerate"
    assert sorted(p.name for p in saved.glob("random_states_*")) == ["random_states_0.pkl", "random_states_1.pkl"]
    two = run(base, tmp_path / "two", train_spec, num_processes=2)
    assert two.metrics["num_processes"] == 2
    a, b = weights(one), weights(two)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)


def test_lora_with_the_kl_loss_trains(base, tmp_path):
    lora = {"r": 4, "dropout": 0.0}
    outcome = run(base, tmp_path / "k", spec(method="lora", lora=lora, lr=2e-2, epochs=3,
                                             loss={"kind": "kl", "beta": 0.5}))
    assert outcome.metrics["loss"] == "kl" and (outcome.model_dir / "adapter_config.json").is_file()
    assert outcome.metrics["train_loss_last"] < outcome.metrics["train_loss_first"]


def test_the_fsdp_loading_path_gives_the_load_model_result(base):
    """Under FSDP the engine loads with from_pretrained and leaves placement to accelerate."""
    from selfaug_compiler.models.loading import load_model
    from selfaug_compiler.train.engine import from_pretrained
    from selfaug_compiler.train.job import TrainJob

    job = TrainJob(base=str(base), spec={}, out_dir="unused")
    direct, reference = from_pretrained(job, torch.bfloat16), load_model(str(base), dtype="bfloat16", device="cpu")
    assert direct.fingerprint == reference.fingerprint and direct.tokenizer.pad_token == reference.tokenizer.pad_token
    a, b = direct.model.state_dict(), reference.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == torch.bfloat16 for k in a)


# ----------------------------------------------------------------------------- CUDA only
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("weight_dtype", ["bf16", "auto"])
def test_cuda_bf16_weights_with_gradient_checkpointing(base, tmp_path, weight_dtype):
    outcome = run(base, tmp_path / "g", spec(weight_dtype=weight_dtype, gradient_checkpointing=True, lr=2e-2, epochs=3),
                  device="cuda", dtype="auto")
    assert outcome.metrics["weight_dtype"] == "bfloat16"
    assert outcome.metrics["train_loss_last"] < outcome.metrics["train_loss_first"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None,
                    reason="needs a CUDA device and bitsandbytes")
def test_cuda_qlora_and_8bit_adamw_train_an_adapter(base, tmp_path):
    qlora = spec(method="lora", lora={"r": 4, "load_in_4bit": True}, optimizer="adamw_8bit", lr=2e-2, epochs=3)
    outcome = run(base, tmp_path / "q", qlora, device="cuda", dtype="auto")
    assert (outcome.model_dir / "adapter_config.json").is_file()
    assert outcome.metrics["train_loss_last"] < outcome.metrics["train_loss_first"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fsdp_one_process_checkpoints_sharded_and_resumes(base, tmp_path):
    launch = dict(local_settings(1, "cuda"), strategy="fsdp")
    train_spec = spec(strategy="fsdp", save_every_steps=1, epochs=2)
    first = run(base, tmp_path / "f", train_spec, device="cuda", launch=launch, max_steps=2)
    assert not first.completed
    assert list((tmp_path / "f" / "checkpoints").glob("step-*/accelerate"))
    resumed = run(base, tmp_path / "f", train_spec, device="cuda", launch=launch)
    whole = run(base, tmp_path / "w", train_spec, device="cuda", launch=launch)
    a, b = weights(resumed), weights(whole)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0, msg=name)

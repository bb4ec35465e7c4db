"""The loop: response-only loss, split invariance, packing, resume, NaN stop, logs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from selfaug_compiler.errors import SelfaugError, StepFailed
from selfaug_compiler.models.loading import load_model
from selfaug_compiler.recipe.schema import TrainSpec
from selfaug_compiler.train.batches import collate
from selfaug_compiler.train.formatting import format_rows, pack_examples
from selfaug_compiler.train.job import CHECKPOINT_DIR, LOG_FILE
from selfaug_compiler.train.launch import train_model
from selfaug_compiler.train.tiny import build_tiny_model

ROWS = [{"prompt": f"What is {i} plus {i + 1}?", "response": f"The answer is {2 * i + 1}." + " ok" * (i % 4)}
        for i in range(24)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


def spec(**kw):
    values = dict(lr=5e-3, epochs=2, batch_size=8, max_length=64, warmup_ratio=0.1, save_every_steps=2)
    values.update(kw)
    return TrainSpec(**values)


def run(base, out, train_spec, **kw):
    kw.setdefault("micro_batch_size", 4)
    return train_model(str(base), ROWS, train_spec, out, dtype="float32", show_progress=False, seed=7, **kw)


def weights(outcome):
    return load_file(str(outcome.model_dir / "model.safetensors"))


def assert_close(a, b, atol):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


def manual_response_loss(base, rows):
    """Mean cross-entropy over assistant tokens only, computed by hand from the chat template."""
    loaded = load_model(str(base), dtype="float32")
    total, count = 0.0, 0
    for row in rows:
        messages = [{"role": "user", "content": row["prompt"]}]
        prompt = loaded.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        answer = row["response"] + "<|im_end|>"
        p_ids = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = loaded.tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + a_ids])
        with torch.no_grad():
            logits = loaded.model(ids).logits[0]
        logp = torch.log_softmax(logits.float(), -1)
        for k, token in enumerate(a_ids):
            total -= float(logp[len(p_ids) + k - 1, token])
            count += 1
    return total / count


def test_first_logged_loss_is_the_response_only_loss(base, tmp_path):
    # one step over the whole data set: the step's loss is measured before any update
    outcome = run(base, tmp_path / "a", spec(epochs=1, batch_size=24), micro_batch_size=8)
    assert outcome.metrics["steps"] == 1
    assert outcome.metrics["train_loss_first"] == pytest.approx(manual_response_loss(base, ROWS), rel=1e-4)


def test_loss_decreases_and_log_has_one_line_per_step(base, tmp_path):
    outcome = run(base, tmp_path / "a", spec(epochs=4, lr=1e-2))
    lines = [json.loads(line) for line in (tmp_path / "a" / LOG_FILE).read_text().splitlines()]
    assert [e["step"] for e in lines] == list(range(1, outcome.metrics["steps"] + 1))
    assert lines[-1]["loss"] < lines[0]["loss"] * 0.8
    assert all(e["tokens_per_s"] > 0 for e in lines)
    assert not (tmp_path / "a" / CHECKPOINT_DIR).exists()  # removed once the artifact is saved


def test_micro_batch_size_does_not_change_the_result(base, tmp_path):
    a = run(base, tmp_path / "a", spec(), micro_batch_size=2)  # 4 accumulation steps
    b = run(base, tmp_path / "b", spec(), micro_batch_size=8)  # 1
    assert a.metrics["accumulation"] == 4 and b.metrics["accumulation"] == 1
    assert_close(weights(a), weights(b), atol=1e-5)


def test_packed_blocks_attend_within_each_example_only(base):
    loaded = load_model(str(base), dtype="float32")
    examples, _ = format_rows(loaded.tokenizer, ROWS[:6], 64)
    blocks = pack_examples(examples, 128)
    assert len(blocks) < len(examples)
    pad = loaded.tokenizer.pad_token_id
    with torch.no_grad():
        packed = loaded.model(**collate(blocks, pad, packed=True)[0], use_cache=False).loss
        separate = loaded.model(**collate(examples, pad, packed=False)[0], use_cache=False).loss
    assert float(packed) == pytest.approx(float(separate), rel=1e-5)


def test_packing_gives_the_same_loss_as_separate_examples_and_trains(base, tmp_path):
    loaded = load_model(str(base), dtype="float32")
    examples, _ = format_rows(loaded.tokenizer, ROWS, 64)
    n_blocks = len(pack_examples(examples, 64))
    assert n_blocks < len(examples)
    # one step over everything: the pre-update loss must not depend on packing
    plain = run(base, tmp_path / "plain", spec(epochs=1, batch_size=len(examples)), micro_batch_size=len(examples))
    packed = run(base, tmp_path / "packed", spec(epochs=1, batch_size=n_blocks, packing=True), micro_batch_size=n_blocks)
    assert packed.metrics["packed_blocks"] == n_blocks
    assert packed.metrics["train_loss_first"] == pytest.approx(plain.metrics["train_loss_first"], rel=1e-5)
    longer = run(base, tmp_path / "longer", spec(packing=True, batch_size=2, epochs=4, lr=1e-2), micro_batch_size=1)
    assert longer.metrics["train_loss_last"] < longer.metrics["train_loss_first"]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_resume_after_interruption_matches_an_uninterrupted_run(base, tmp_path, method):
    extra = {"lora": {"r": 4, "alpha": 8, "dropout": 0.2, "target_modules": ["q_proj", "v_proj"]}} if method == "lora" else {}
    train_spec = spec(method=method, **extra)
    straight = run(base, tmp_path / "straight", train_spec)
    stopped = run(base, tmp_path / "resumed", train_spec, max_steps=3)  # checkpoints at 2, then at the stop (3)
    assert not stopped.completed and stopped.model_dir is None
    assert [p.name for p in (tmp_path / "resumed" / CHECKPOINT_DIR).iterdir()] == ["step-000003"]
    resumed = run(base, tmp_path / "resumed", train_spec)
    assert resumed.completed
    name = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    a = load_file(str(straight.model_dir / name))
    b = load_file(str(resumed.model_dir / name))
    assert_close(a, b, atol=1e-6)
    log = [json.loads(line)["step"] for line in (tmp_path / "resumed" / LOG_FILE).read_text().splitlines()]
    assert log == list(range(1, straight.metrics["steps"] + 1))
    assert resumed.metrics["train_loss_first"] == pytest.approx(straight.metrics["train_loss_first"])


def test_a_checkpoint_of_another_job_is_not_resumed(base, tmp_path):
    run(base, tmp_path / "a", spec(lr=5e-3), max_steps=2)
    other = run(base, tmp_path / "a", spec(lr=1e-3))
    fresh = run(base, tmp_path / "b", spec(lr=1e-3))
    assert_close(weights(other), weights(fresh), atol=1e-6)


def test_nan_loss_stops_with_a_clear_message_and_keeps_finite_checkpoint(base, tmp_path):
    def poison(step, model):
        if step == 2:  # after the step-2 checkpoint is written
            with torch.no_grad():
                model.model.layers[0].mlp.up_proj.weight.fill_(float("nan"))

    with pytest.raises(StepFailed, match=r"loss became nan at step 3") as err:
        run(base, tmp_path / "a", spec(), after_step=poison)
    assert "resumes" in str(err.value)
    checkpoints = list((tmp_path / "a" / CHECKPOINT_DIR).iterdir())
    assert [p.name for p in checkpoints] == ["step-000002"]
    saved = load_file(str(checkpoints[0] / "trainable.safetensors"))
    assert all(torch.isfinite(t).all() for t in saved.values())
    assert not (tmp_path / "a" / "model").exists()


def test_global_batch_must_divide(base, tmp_path):
    with pytest.raises(SelfaugError, match="multiple of 3 x 1"):
        run(base, tmp_path / "a", spec(batch_size=8), micro_batch_size=3)


def test_bf16_autocast_keeps_fp32_master_weights(base, tmp_path):
    outcome = train_model(str(base), ROWS, spec(epochs=1), tmp_path / "a", dtype="bfloat16",
                          micro_batch_size=4, show_progress=False)
    assert outcome.metrics["compute_dtype"] == "bfloat16"
    assert all(t.dtype == torch.float32 for t in weights(outcome).values())
    assert outcome.metrics["train_loss_last"] == outcome.metrics["train_loss_last"]  # finite, not NaN

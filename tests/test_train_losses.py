"""train.loss: DFT and KL-anchored losses against hand computations on a tiny model; beta=0 is CE;
packed = unpacked; LoRA's base (adapters off) is the base model."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from selfaug_compiler.models.loading import load_model
from selfaug_compiler.recipe.schema import TrainSpec
from selfaug_compiler.train.batches import collate, global_batch
from selfaug_compiler.train.formatting import IGNORE, format_rows, pack_examples
from selfaug_compiler.train.launch import train_model
from selfaug_compiler.train.losses import base_logits_fn, token_loss_sum
from selfaug_compiler.train.tiny import build_tiny_model

ROWS = [{"prompt": f"What is {i} plus {i + 1}?", "response": f"The answer is {2 * i + 1}." + " ok" * (i % 3)}
        for i in range(16)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny2") / "other", seed=1)


def spec(**kw):
    values = dict(lr=5e-3, epochs=1, batch_size=8, max_length=64, warmup_ratio=0.0, save_every_steps=100)
    values.update(kw)
    return TrainSpec(**values)


def run(base, out, train_spec, **kw):
    return train_model(str(base), ROWS, train_spec, out, dtype="float32", show_progress=False, seed=5,
                       micro_batch_size=kw.pop("micro_batch_size", 4), **kw)


def prompt_and_answer(tokenizer, row):
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}], tokenize=False,
                                           add_generation_prompt=True)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(row["response"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
    return p_ids, a_ids


def hand_losses(model, base_model, tokenizer, rows, beta):
    """Per-token sums by explicit loops over tokens and the vocabulary: (ce, dft, kl term, count)."""
    ce = dft = kl = 0.0
    count = 0
    for row in rows:
        p_ids, a_ids = prompt_and_answer(tokenizer, row)
        ids = torch.tensor([p_ids + a_ids])
        with torch.no_grad():
            p = torch.softmax(model(ids).logits[0].double(), -1)
            q = torch.softmax(base_model(ids).logits[0].double(), -1) if base_model is not None else None
        for k, token in enumerate(a_ids):
            pos = len(p_ids) + k - 1
            prob = float(p[pos, token])
            ce -= math.log(prob)
            dft -= prob * math.log(prob)
            if q is not None:
                kl += sum(float(p[pos, v]) * (math.log(float(p[pos, v])) - math.log(float(q[pos, v])))
                          for v in range(p.shape[-1]))
            count += 1
    return ce, dft, kl, count


def batch_of(tokenizer, rows):
    ids, labels = [], []
    for row in rows:
        p_ids, a_ids = prompt_and_answer(tokenizer, row)
        ids.append(p_ids + a_ids)
        labels.append([IGNORE] * len(p_ids) + a_ids)
    width = max(map(len, ids))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    label_t = torch.tensor([y + [IGNORE] * (width - len(y)) for y in labels])
    return {"input_ids": input_ids, "attention_mask": mask}, label_t


def test_token_losses_equal_hand_computation(base, other):
    model = load_model(str(other), dtype="float32").model
    loaded = load_model(str(base), dtype="float32")
    rows = ROWS[:3]
    ce, dft, kl, _ = hand_losses(model, loaded.model, loaded.tokenizer, rows, beta=0.3)
    inputs, labels = batch_of(loaded.tokenizer, rows)
    with torch.no_grad():
        logits, base_logits = model(**inputs).logits, loaded.model(**inputs).logits
    assert float(token_loss_sum(logits, labels, "ce")) == pytest.approx(ce, rel=1e-5)
    assert float(token_loss_sum(logits, labels, "dft")) == pytest.approx(dft, rel=1e-5)
    assert kl > 1e-3  # two different random models: the KL term is not trivially zero
    assert float(token_loss_sum(logits, labels, "kl", 0.3, base_logits)) == pytest.approx(ce + 0.3 * kl, rel=1e-5)
    assert float(token_loss_sum(logits, labels, "kl", 0.0, base_logits)) == pytest.approx(ce, rel=1e-6)


def test_dft_first_logged_loss_is_the_hand_dft_of_the_first_batch(base, tmp_path):
    outcome = run(base, tmp_path / "dft", spec(loss={"kind": "dft"}))
    loaded = load_model(str(base), dtype="float32")
    first = [ROWS[i] for i in global_batch(0, len(ROWS), 8, 5)]
    ce, dft, _, count = hand_losses(loaded.model, None, loaded.tokenizer, first, beta=0.0)
    assert outcome.metrics["loss"] == "dft"
    assert outcome.metrics["train_loss_first"] == pytest.approx(dft / count, rel=1e-4)
    assert outcome.metrics["train_loss_first"] < ce / count  # weights are probabilities < 1


def test_kl_with_beta_zero_trains_exactly_like_ce(base, tmp_path):
    ce = run(base, tmp_path / "ce", spec())
    kl0 = run(base, tmp_path / "kl0", spec(loss={"kind": "kl", "beta": 0.0}))
    a, b = (load_file(str(o.model_dir / "model.safetensors")) for o in (ce, kl0))
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)


def test_kl_anchor_keeps_the_model_closer_to_base(base, tmp_path):
    """Same data and steps: beta > 0 ends with a smaller KL from the base on the training targets
    than plain CE."""
    loaded = load_model(str(base), dtype="float32")
    inputs, labels = batch_of(loaded.tokenizer, ROWS)
    ce = run(base, tmp_path / "ce", spec(lr=2e-2, epochs=2))
    kl = run(base, tmp_path / "kl", spec(lr=2e-2, epochs=2, loss={"kind": "kl", "beta": 5.0}))

    def kl_to_base(outcome):
        model = load_model(str(outcome.model_dir), dtype="float32").model
        with torch.no_grad():
            logits, base_logits = model(**inputs).logits, loaded.model(**inputs).logits
        return float(token_loss_sum(logits, labels, "kl", 1.0, base_logits) - token_loss_sum(logits, labels, "ce"))

    assert kl_to_base(kl) < 0.7 * kl_to_base(ce)
    assert kl.metrics["train_loss_first"] == pytest.approx(ce.metrics["train_loss_first"], rel=1e-5)  # KL=0 at start


@pytest.mark.parametrize("kind", ["dft", "kl"])
def test_packed_blocks_give_the_same_loss_as_separate_examples(base, other, kind):
    loaded = load_model(str(base), dtype="float32")
    model = load_model(str(other), dtype="float32").model
    examples, _ = format_rows(loaded.tokenizer, ROWS[:6], 64)
    blocks = pack_examples(examples, 128)
    assert len(blocks) < len(examples)
    pad = loaded.tokenizer.pad_token_id
    sums = []
    for batch in (collate(blocks, pad, packed=True)[0], collate(examples, pad, packed=False)[0]):
        labels = batch.pop("labels")
        with torch.no_grad():
            logits, base_logits = (m(**batch, use_cache=False).logits for m in (model, loaded.model))
            sums.append(float(token_loss_sum(logits, labels, kind, 0.7, base_logits)))
    assert sums[0] == pytest.approx(sums[1], rel=1e-5)


def test_dft_packed_run_starts_at_the_unpacked_loss(base, tmp_path):
    loaded = load_model(str(base), dtype="float32")
    examples, _ = format_rows(loaded.tokenizer, ROWS, 64)
    n_blocks = len(pack_examples(examples, 64))
    dft = {"kind": "dft"}
    plain = run(base, tmp_path / "plain", spec(batch_size=len(examples), loss=dft), micro_batch_size=len(examples))
    packed = run(base, tmp_path / "packed", spec(batch_size=n_blocks, packing=True, loss=dft), micro_batch_size=n_blocks)
    assert packed.metrics["packed_blocks"] == n_blocks < len(examples)
    assert packed.metrics["train_loss_first"] == pytest.approx(plain.metrics["train_loss_first"], rel=1e-5)


def test_lora_base_logits_are_the_base_models(base):
    from selfaug_compiler.train.methods import apply_method

    loaded = load_model(str(base), dtype="float32")
    reference = load_model(str(base), dtype="float32").model
    lora_spec = spec(method="lora", lora={"r": 4, "dropout": 0.0}, loss={"kind": "kl", "beta": 1.0})
    model, _ = apply_method(loaded.model, lora_spec)
    with torch.no_grad():  # move the adapter off zero so the adapted model differs from the base
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    inputs, _ = batch_of(loaded.tokenizer, ROWS[:2])
    fn = base_logits_fn(model, lora_spec, load_base=lambda: pytest.fail("LoRA must not load a second copy"))
    with torch.no_grad():
        expected, adapted = reference(**inputs).logits, model(**inputs).logits
    torch.testing.assert_close(fn(inputs), expected, atol=1e-5, rtol=0)
    assert (adapted - expected).abs().max() > 1e-3


def test_beta_needs_kind_kl():
    with pytest.raises(ValidationError, match="kind kl"):
        TrainSpec(loss={"kind": "dft", "beta": 0.1})
    assert TrainSpec().loss.kind == "ce"


def test_loss_at_its_default_leaves_content_ids_unchanged():
    from selfaug_compiler.recipe.schema import content_view

    assert "loss" not in content_view(TrainSpec())
    assert "loss" not in content_view(TrainSpec(loss={"kind": "ce"}))
    assert content_view(TrainSpec(loss={"kind": "dft"}))["loss"] == {"kind": "dft", "beta": 0.0}

"""KL-to-base diagnostic (issue 15.3): the batched per-token KL equals a direct computation."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfaug_compiler.evaluate.kl_diag import kl_to_base, token_kl
from tests.tiny_models import build_tiny_model


def _direct_kl(base, tuned, prompt: list[int], answer: list[int]) -> float:
    """sum_t sum_v p_base(v | prefix_t) (log p_base - log p_tuned), one unpadded sequence, one
    position at a time (a model call per answer token)."""
    import torch

    total = 0.0
    with torch.inference_mode():
        for t in range(len(answer)):
            prefix = torch.tensor([prompt + answer[:t]])
            pb = torch.softmax(base(input_ids=prefix).logits[0, -1].double(), -1)
            pt = torch.softmax(tuned(input_ids=prefix).logits[0, -1].double(), -1)
            total += float((pb * (pb.log() - pt.log())).sum())
    return total


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    from selfaug_compiler.models.loading import load_model

    root = tmp_path_factory.mktemp("kl")
    base = load_model(str(build_tiny_model(root / "base", seed=0)), dtype="float32", device="cpu")
    tuned = load_model(str(build_tiny_model(root / "tuned", seed=1)), dtype="float32", device="cpu")
    return base, tuned


def test_batched_kl_matches_direct_computation(models) -> None:
    base, tuned = models
    tok = base.tokenizer
    pairs = [(tok("Question: how many apples?")["input_ids"], tok(" 7 apples are left.")["input_ids"]),
             (tok("def add(a, b):")["input_ids"], tok("\n    return a + b")["input_ids"]),
             (tok("The quick brown fox")["input_ids"], tok(" jumps")["input_ids"])]
    total, count = token_kl(base.model, tuned.model, pairs, pad_id=tok.pad_token_id, batch_size=2)
    assert count == sum(len(a) for _, a in pairs)
    direct = sum(_direct_kl(base.model, tuned.model, p, a) for p, a in pairs)
    assert direct > 0.01
    assert total == pytest.approx(direct, rel=1e-4)


def test_kl_of_a_model_to_itself_is_zero(models) -> None:
    base, _ = models
    tok = base.tokenizer
    pairs = [(tok("12 + 30 =")["input_ids"], tok(" 42")["input_ids"])]
    total, count = token_kl(base.model, base.model, pairs, pad_id=tok.pad_token_id)
    assert count == len(pairs[0][1]) and abs(total) < 1e-6


def test_kl_to_base_on_sampled_base_answers(models) -> None:
    base, tuned = models
    prompts = ["how many apples are left?", "talk about tea", "rewrite the answer"]
    same = kl_to_base(base, base, prompts, max_new_tokens=8, seed=0, batch_size=2)
    other = kl_to_base(base, tuned, prompts, max_new_tokens=8, seed=0, batch_size=2)
    assert same["prompts"] == 3 and same["tokens"] == other["tokens"] > 0  # the same sampled answers
    assert abs(same["kl_to_base"]) < 1e-6
    assert other["kl_to_base"] > 0.01


def test_plan_has_the_kl_step_only_when_asked() -> None:
    from selfaug_compiler.compile.planner import build_plan
    from selfaug_compiler.errors import SelfaugError
    from selfaug_compiler.recipe.loader import load_recipe

    recipes = Path(__file__).parents[1] / "recipes"
    plain = build_plan(load_recipe(recipes / "s3ft.yaml"))
    asked = build_plan(load_recipe(recipes / "s3ft.yaml", ["diagnose.limit=16", "task.split.heldout=32"]))
    assert "diagnose.kl_to_base" not in {s.name for s in plain.steps}
    steps = {s.name: s for s in asked.steps}
    kl = steps["diagnose.kl_to_base"]
    assert kl.kind == "diagnose" and kl.inputs == ["ingest.gsm8k", "train"] and kl.params["limit"] == 16
    assert "diagnose.kl_to_base" in steps["report"].inputs
    with pytest.raises(SelfaugError, match="held-out"):
        build_plan(load_recipe(recipes / "s3ft.yaml", ["diagnose.limit=16", "task.split.heldout=0"]))


def test_report_carries_kl_in_summary_and_table() -> None:
    from selfaug_compiler.report.table import summary_parts

    assert any("KL to base 0.1234 nats/token" in p for p in summary_parts({"kl_to_base": 0.12341}))
    assert not any("KL" in p for p in summary_parts({}))


def test_validate_refuses_kl_without_heldout_rows() -> None:
    from selfaug_compiler.compile.checks import check_recipe
    from selfaug_compiler.recipe.loader import load_recipe

    recipes = Path(__file__).parents[1] / "recipes"
    bad = check_recipe(load_recipe(recipes / "s3ft.yaml", ["diagnose.limit=8", "task.split.heldout=0"]))
    assert not bad.ok and any("diagnose.kl_to_base" in e.message for e in bad.errors)
    good = check_recipe(load_recipe(recipes / "s3ft.yaml", ["diagnose.limit=8", "task.split.heldout=8"]))
    assert not any("diagnose" in e.message for e in good.errors)

"""Weight interpolation (issue 15.1): theta_alpha on tiny models, its plan steps and the report's pick."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfaug_compiler.compile.planner import build_plan
from selfaug_compiler.recipe.loader import load_recipe
from selfaug_compiler.report.interpolation import interpolation_lines, interpolation_section
from tests.tiny_models import build_tiny_model

RECIPES = Path(__file__).parents[1] / "recipes"


def _state(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype="float32").state_dict()


def test_full_model_interpolation_endpoints_and_midpoint(tmp_path: Path) -> None:
    import torch

    from selfaug_compiler.models.interpolate import save_interpolated

    base = build_tiny_model(tmp_path / "base", seed=0)
    tuned = build_tiny_model(tmp_path / "tuned", seed=1)
    sb, st = _state(base), _state(tuned)
    assert any(not torch.equal(sb[k], st[k]) for k in sb)
    fps = {}
    for alpha in (0.0, 0.5, 1.0):
        fps[alpha] = save_interpolated(str(base), tuned, alpha, tmp_path / f"a{alpha}")
        got = _state(tmp_path / f"a{alpha}")
        for k in sb:
            want = sb[k] if alpha == 0 else st[k] if alpha == 1 else (sb[k] + st[k]) / 2
            torch.testing.assert_close(got[k], want, rtol=0, atol=1e-6)
    assert len(set(fps.values())) == 3  # each theta_alpha is its own artifact


def test_lora_scaled_by_alpha_equals_interpolating_the_merged_weights(tmp_path: Path) -> None:
    import json

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from selfaug_compiler.models.interpolate import save_interpolated
    from selfaug_compiler.models.loading import ARTIFACT_META

    base = build_tiny_model(tmp_path / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype="float32"),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(3)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero: give the adapter a non-zero update
            p.data.normal_(0, 0.5)
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    (adapter / ARTIFACT_META).write_text(json.dumps({"base_model": str(base)}))
    sb = _state(base)
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype="float32"),
                                       adapter).merge_and_unload().state_dict()
    changed = [k for k in sb if not torch.equal(sb[k], merged[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
    for alpha in (0.0, 0.25, 1.0):
        save_interpolated(str(base), adapter, alpha, tmp_path / f"a{alpha}")
        got = _state(tmp_path / f"a{alpha}")
        for k in sb:
            torch.testing.assert_close(got[k], (1 - alpha) * sb[k] + alpha * merged[k], rtol=0, atol=1e-5)


def test_plan_adds_interpolate_steps_and_their_evals_without_changing_other_ids() -> None:
    plain = build_plan(load_recipe(RECIPES / "s3ft.yaml"), RECIPES.parent / "out")
    interp = build_plan(load_recipe(RECIPES / "s3ft.yaml", ["interpolate.alphas=[0.5, 0.25]"]), RECIPES.parent / "out")
    plain_ids = {s.name: s.id for s in plain.steps}
    steps = {s.name: s for s in interp.steps}
    for name, step_id in plain_ids.items():
        if name != "report":
            assert steps[name].id == step_id, name
    assert steps["interpolate.a0.25"].inputs == ["train"]
    assert steps["interpolate.a0.5"].params["alpha"] == 0.5
    after = [n for n in plain_ids if n.startswith("eval.after.")]
    assert after
    for name in after:
        for label in ("a0.25", "a0.5"):
            step = steps[f"{name}.{label}"]
            assert f"interpolate.{label}" in step.inputs and "train" not in step.inputs
            assert step.params == steps[name].params
    report = steps["report"]
    assert report.params["interpolate"] == {"alphas": [0.25, 0.5], "max_retention_drop_pts": 2.0}
    assert {e["alpha"] for e in report.params["evals"] if "alpha" in e} == {0.25, 0.5}
    assert len({s.id for s in interp.steps}) == len(interp.steps)


@pytest.mark.parametrize("bad", ["interpolate.alphas=[1.0]", "interpolate.alphas=[0.5, 0.5]",
                                 "interpolate.alphas=[]"])
def test_bad_alphas_are_refused(bad: str) -> None:
    from selfaug_compiler.errors import SelfaugError

    with pytest.raises(SelfaugError):
        load_recipe(RECIPES / "s3ft.yaml", [bad])


def _rows() -> list[dict]:
    return [{"benchmark": "heldout", "category": "in_domain", "before": 10.0, "after": 40.0},
            {"benchmark": "arc_easy", "category": "retention", "before": 60.0, "after": 50.0},
            {"benchmark": "style_retention", "category": "retention", "before": 90.0, "after": 70.0}]


def test_pick_maximizes_in_domain_within_the_tolerance() -> None:
    scores = {0.25: {"heldout": 20.0, "arc_easy": 60.0, "style_retention": 89.0},
              0.5: {"heldout": 30.0, "arc_easy": 59.0, "style_retention": 88.5},
              0.75: {"heldout": 38.0, "arc_easy": 55.0, "style_retention": 80.0}}
    section = interpolation_section(_rows(), scores, max_drop=2.0)
    assert [a["alpha"] for a in section["alphas"]] == [0.25, 0.5, 0.75, 1.0]
    assert [a["qualifies"] for a in section["alphas"]] == [True, True, False, False]
    assert section["picked"] == 0.5
    assert section["alphas"][1]["in_domain_gain"] == pytest.approx(20.0)
    assert section["alphas"][1]["retention_worst_delta"] == pytest.approx(-1.5)
    assert section["alphas"][1]["retention_worst_benchmark"] == "style_retention"
    assert "alpha 0.5" in section["why"] and "(worst -1.5 style_retention)" in section["why"]
    assert any(line.endswith("*") and "alpha 0.5" in line for line in interpolation_lines(section))


def test_no_alpha_qualifies_says_so() -> None:
    section = interpolation_section(_rows(), {0.5: {"heldout": 30.0, "arc_easy": 50.0, "style_retention": 89.0}},
                                    max_drop=1.0)
    assert section["picked"] is None
    assert "no alpha keeps every retention benchmark within 1 pts" in section["why"]
    assert "a=0.5: -10.0 arc_easy, a=1: -20.0 style_retention" in section["why"]  # which benchmark kept each out


def test_adapter_on_an_earlier_stage_interpolates_from_the_recipe_base(tmp_path: Path) -> None:
    """A continual recipe's last LoRA adapter sits on the previous stage's model: theta_alpha is
    still (1 - alpha) * base + alpha * (that model + adapter)."""
    import json

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from selfaug_compiler.models.interpolate import save_interpolated
    from selfaug_compiler.models.loading import ARTIFACT_META

    base = build_tiny_model(tmp_path / "base", seed=0)
    stage1 = build_tiny_model(tmp_path / "stage1", seed=1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(stage1, dtype="float32"),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.fill_(0.1)
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    (adapter / ARTIFACT_META).write_text(json.dumps({"base_model": str(stage1)}))
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(stage1, dtype="float32"),
                                       adapter).merge_and_unload().state_dict()
    sb = _state(base)
    save_interpolated(str(base), adapter, 0.5, tmp_path / "a0.5")
    got = _state(tmp_path / "a0.5")
    for k in sb:
        torch.testing.assert_close(got[k], 0.5 * sb[k] + 0.5 * merged[k], rtol=0, atol=1e-5)

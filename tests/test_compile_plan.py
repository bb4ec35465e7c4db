"""Recipe -> Plan: structure, content-id invariants, deterministic files, plan diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfaug_compiler.cli import main
from selfaug_compiler.compile.planner import build_plan
from selfaug_compiler.plan import Plan
from selfaug_compiler.recipe.loader import load_recipe

RECIPES = Path(__file__).parents[1] / "recipes"


def plan_of(name: str, overrides: list[str] | None = None) -> Plan:
    return build_plan(load_recipe(RECIPES / name, overrides), RECIPES.parent / "out")


def ids(plan: Plan) -> dict[str, str]:
    return {s.name: s.id for s in plan.steps}


def downstream(plan: Plan, start: str) -> set[str]:
    out, frontier = {start}, [start]
    while frontier:
        current = frontier.pop()
        for s in plan.steps:
            if current in s.inputs and s.name not in out:
                out.add(s.name)
                frontier.append(s.name)
    return out


def test_s3ft_steps_in_order() -> None:
    names = [s.name for s in plan_of("s3ft.yaml").topological()]
    chain = ["ingest.gsm8k", "generate.self_answer", "judge.self_answer", "generate.paraphrase",
             "judge.paraphrase", "mix", "train", "eval.after.arc_easy", "report"]
    assert [n for n in names if n in chain] == chain
    assert {"eval.before.heldout", "eval.after.heldout", "eval.before.sciq"} <= set(names)


@pytest.mark.parametrize("name,expected", [
    ("sft.yaml", set()), ("sa_sft.yaml", {"generate.self_dialogue"}),
    ("sdft.yaml", {"generate.rewrite", "judge.rewrite"}), ("replay.yaml", {"ingest.replay"}),
])
def test_each_method_compiles_to_its_steps(name: str, expected: set[str]) -> None:
    names = {s.name for s in plan_of(name).steps}
    extra = {n for n in names if n.startswith(("generate.", "judge.", "ingest.replay"))}
    assert extra == expected
    assert {"ingest.gsm8k", "mix", "train", "report"} <= names


def test_temperature_changes_generate_and_downstream_only() -> None:
    a = plan_of("sa_sft.yaml")
    b = plan_of("sa_sft.yaml", ["augment.sampling.temperature=0.8"])
    changed = {n for n, i in ids(a).items() if ids(b)[n] != i}
    assert changed == downstream(a, "generate.self_dialogue")
    assert "ingest.gsm8k" not in changed and "eval.before.arc_easy" not in changed


def test_speed_fields_change_no_id() -> None:
    a = plan_of("s3ft.yaml")
    b = plan_of("s3ft.yaml", ["execution.micro_batch_size=1", "execution.generate_batch_size=3",
                              "execution.num_processes=4", "train.save_every_steps=7", "augment.judge.timeout_s=9"])
    assert ids(a) == ids(b)
    assert b.step("train").speed["micro_batch_size"] == 1 and b.step("train").speed["num_processes"] == 4


def test_explicit_defaults_mean_the_same_plan(tmp_path: Path) -> None:
    short = tmp_path / "short.yaml"
    short.write_text("name: x\nmodel: {ref: 'packaged:smollm2-135m-instruct'}\ntask: {name: gsm8k, source: {kind: packaged, name: gsm8k}, split: {train: 5, heldout: 2}}\n"
                     "augment: {method: sa_sft}\n")
    spelled = tmp_path / "spelled.yaml"
    spelled.write_text("name: x\nseed: 1234\nmodel: {ref: 'packaged:smollm2-135m-instruct', dtype: auto}\n"
                       "task:\n  name: gsm8k\n  source: {kind: packaged, name: gsm8k}\n"
                       "  fields: {prompt: question, response: answer}\n  split: {train: 5, heldout: 2, seed: 0}\n"
                       "augment:\n  method: sa_sft\n  ratio: 0.5\n  sampling: {temperature: 0.7, top_p: 0.9}\n"
                       "  template: prompts/self_dialogue.j2\ntrain: {method: full, lr: 1.0e-4, epochs: 2}\n"
                       "execution: {micro_batch_size: 2}\n")
    a, b = build_plan(load_recipe(short)), build_plan(load_recipe(spelled))
    assert ids(a) == ids(b) and a.recipe_hash == b.recipe_hash


def test_base_model_evals_are_shared_across_recipes() -> None:
    sft, s3ft = ids(plan_of("sft.yaml")), ids(plan_of("s3ft.yaml"))
    for bench in ("arc_easy", "piqa", "sciq", "style_retention"):
        assert sft[f"eval.before.{bench}"] == s3ft[f"eval.before.{bench}"]
        assert sft[f"eval.after.{bench}"] != s3ft[f"eval.after.{bench}"]
    assert plan_of("sft.yaml").step("eval.before.heldout").inputs == ["ingest.gsm8k"]


def test_continual_stages_chain_their_training() -> None:
    plan = plan_of("continual.yaml")
    assert plan.step("train.s0").inputs == ["mix.s0"]
    assert plan.step("train.s1").inputs == ["mix.s1", "train.s0"]
    assert plan.step("train.s2").inputs == ["mix.s2", "train.s1"]
    names = {s.name for s in plan.steps}
    assert {"eval.after.arc_easy.s0", "eval.after.arc_easy.s2", "eval.after.heldout.gsm8k.s2",
            "ingest.mbpp.s1", "generate.self_dialogue.s2"} <= names
    assert "eval.after.heldout.sciq.s0" not in names  # a task is not evaluated before it is seen
    plan.topological()  # no cycle


def test_compile_is_byte_identical_and_plan_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    recipe = str(RECIPES / "sa_sft.yaml")
    assert main(["compile", recipe, "-o", str(a)]) == 0
    assert main(["compile", recipe, "-o", str(b)]) == 0
    for name in ("plan.json", "run.sh", "accelerate_config.yaml", "slurm.sbatch"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    run_sh = (a / "run.sh").read_text()
    assert "set -euo pipefail" in run_sh and run_sh.count("--only ") == len(Plan.load(a / "plan.json").steps)
    assert str(tmp_path) not in (a / "plan.json").read_text()
    assert main(["compile", recipe, "-o", str(c), "--set", "train.lr=3e-4", "--set", "execution.launcher=slurm"]) == 0
    capsys.readouterr()
    assert main(["plan", "diff", str(a), str(c)]) == 0
    out = capsys.readouterr().out
    assert "~ train " in out and "~ report " in out and "generate.self_dialogue" not in out
    assert main(["plan", "diff", str(a), str(b)]) == 0
    assert capsys.readouterr().out.startswith("0 changed")


def test_compile_refuses_an_invalid_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compile", str(RECIPES / "lora.yaml"), "-o", str(tmp_path / "o"), "--set", "train.lora.target_modules=[qq]"])
    assert code == 2 and not (tmp_path / "o" / "plan.json").exists()
    assert "train.lora.target_modules.0" in capsys.readouterr().err

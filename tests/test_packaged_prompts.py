"""Few-shot and chat-template settings of the packaged benchmarks (``eval.packaged``).

The few-shot prompt holds k solved examples, all from items outside the evaluated subset (never
the item itself); the settings enter the benchmark fingerprint and the step id, batch size
does not; at their defaults nothing changes; a tiny model scores the few-shot and chat forms
with the same results at every batch size; validate refuses settings a benchmark cannot take.
"""

from __future__ import annotations

import math

import pytest

from selfaug_compiler.compile.planner import build_plan
from selfaug_compiler.evaluate.catalog import installed_benchmarks
from selfaug_compiler.evaluate.prompting import FEWSHOT_DELIMITER, cut_at
from selfaug_compiler.evaluate.registry import load_benchmark
from selfaug_compiler.recipe.loader import load_recipe
from tests.test_compile_checks import make_model_dir
from tests.test_lm_eval_benchmarks import errors, recipe

needs_arc = pytest.mark.skipif("arc_easy" not in installed_benchmarks(), reason="packaged arc_easy data not installed")


def example_text(item) -> str:
    ctx, cont = item.requests[item.gold]
    return ctx + cont


@needs_arc
@pytest.mark.parametrize("k", [1, 3])
def test_fewshot_examples_come_from_outside_the_evaluated_subset(k):
    plain = load_benchmark("arc_easy", limit=12, seed=0)
    shots = load_benchmark("arc_easy", limit=12, seed=0, prompt={"num_fewshot": k, "fewshot_seed": 1234})
    everything = load_benchmark("arc_easy", seed=0)
    evaluated = {item.id for item in plain.items}
    outside = {example_text(item): item.id for item in everything.items if item.id not in evaluated}
    assert [i.id for i in shots.items] == [i.id for i in plain.items]
    for zero, few in zip(plain.items, shots.items):
        assert few.gold == zero.gold and len(few.requests) == len(zero.requests)
        for (ctx0, cont0), (ctx, cont) in zip(zero.requests, few.requests):
            assert cont == cont0 and ctx.endswith(FEWSHOT_DELIMITER + ctx0)
            prefix = ctx[: -len(ctx0)]
            examples = prefix.split(FEWSHOT_DELIMITER)[:-1]
            assert len(examples) == k
            assert all(e in outside for e in examples)  # solved items outside the evaluated subset
            assert example_text(zero) not in examples
    assert shots.settings["num_fewshot"] == k
    assert shots.fingerprint != plain.fingerprint


@needs_arc
def test_defaults_change_nothing_and_the_seed_changes_the_examples():
    plain = load_benchmark("arc_easy", limit=8, seed=0)
    default = load_benchmark("arc_easy", limit=8, seed=0,
                             prompt={"num_fewshot": 0, "fewshot_seed": 1234, "chat_template": None})
    assert default.fingerprint == plain.fingerprint and default.items == plain.items
    a = load_benchmark("arc_easy", limit=8, seed=0, prompt={"num_fewshot": 2, "fewshot_seed": 1})
    b = load_benchmark("arc_easy", limit=8, seed=0, prompt={"num_fewshot": 2, "fewshot_seed": 2})
    assert a.fingerprint != b.fingerprint
    chat = load_benchmark("arc_easy", limit=8, seed=0, prompt={"chat_template": True})
    assert chat.settings["chat"] is True and chat.fingerprint != plain.fingerprint
    assert all(cont == cont0[1:] for i0, i in zip(plain.items, chat.items)  # no delimiter after a chat turn
               for (_, cont0), (_, cont) in zip(i0.requests, i.requests))


def test_generation_output_is_cut_at_stop_strings():
    assert cut_at("so 3 + 4 = 7.\n#### 7\n\nQuestion: what is 9 - 1?", ["Question:"]) == "so 3 + 4 = 7.\n#### 7\n\n"
    assert cut_at("no stop here", ["Question:"]) == "no stop here"


@needs_arc
def test_tiny_model_scores_fewshot_and_chat_forms_the_same_at_every_batch_size(tmp_path):
    from selfaug_compiler.evaluate.core import run_benchmark
    from selfaug_compiler.models.loading import load_model
    from tests.tiny_models import build_tiny_model

    loaded = load_model(str(build_tiny_model(tmp_path / "m")), dtype="float32", device="cpu")
    for prompt in ({"num_fewshot": 2}, {"num_fewshot": 1, "chat_template": True}):
        bench = load_benchmark("arc_easy", limit=4, seed=0, prompt=prompt)
        _, one = run_benchmark(loaded, bench, batch_size=1)
        _, many = run_benchmark(loaded, bench, batch_size=16)
        assert [r["id"] for r in one] == [i.id for i in bench.items]
        for a, b in zip(one, many):
            assert a["acc"] == b["acc"] and a["pred"] == b["pred"]
            assert all(math.isclose(x, y, abs_tol=1e-4) for x, y in zip(a["lls"], b["lls"]))


def plan_ids(tmp_path, packaged: str, batch: int = 8) -> dict[str, dict]:
    path = recipe(tmp_path, "tiny", ["arc_easy"], packaged)
    path.write_text(path.read_text().replace("eval_batch_size: 8", f"eval_batch_size: {batch}"))
    plan = build_plan(load_recipe(path))
    return {s.name: (s.id, s.params.get("prompt")) for s in plan.steps if s.kind == "evaluate"}


def test_step_id_changes_with_the_shot_count_not_with_batch_size(tmp_path):
    make_model_dir(tmp_path)
    none = plan_ids(tmp_path, "")
    assert set(none) == {"eval.before.arc_easy", "eval.after.arc_easy"}
    assert all(prompt is None for _, prompt in none.values())
    assert plan_ids(tmp_path, "  packaged: {}\n") == none  # an added field left empty: ids as before
    three = plan_ids(tmp_path, "  packaged:\n    arc_easy: {num_fewshot: 3}\n")
    assert plan_ids(tmp_path, "  packaged:\n    arc_easy: {num_fewshot: 3}\n", batch=2) == three
    five = plan_ids(tmp_path, "  packaged:\n    arc_easy: {num_fewshot: 5}\n")
    for name in none:
        assert len({none[name][0], three[name][0], five[name][0]}) == 3
        assert three[name][1]["num_fewshot"] == 3


def test_validate_refuses_settings_a_benchmark_cannot_take(tmp_path):
    make_model_dir(tmp_path)
    path = recipe(tmp_path, "tiny", ["arc_easy", "mmlu"],
                  "  packaged:\n    mmlu: {num_fewshot: 5}\n    arc_easyy: {num_fewshot: 1}\n")
    found = errors(path)
    assert any("eval.packaged.mmlu" in e and "few-shot examples are not offered for `mmlu`" in e for e in found), found
    assert any("`arc_easyy` is not a packaged benchmark" in e and "arc_easy" in e for e in found), found


@pytest.mark.skipif("gsm8k" not in installed_benchmarks(), reason="packaged gsm8k data not installed")
def test_gsm8k_fewshot_uses_lm_evals_format_with_worked_solutions_from_outside_the_subset():
    plain = load_benchmark("gsm8k", limit=5, seed=0)
    shots = load_benchmark("gsm8k", limit=5, seed=0, prompt={"num_fewshot": 2, "chat_template": False})
    evaluated = {item.id for item in plain.items}
    outside = {i.prompt: i for i in load_benchmark("gsm8k", seed=0).items if i.id not in evaluated}
    assert shots.settings["chat"] is False and shots.settings["num_fewshot"] == 2
    for zero, few in zip(plain.items, shots.items):
        assert few.prompt.endswith(f"Question: {zero.prompt}\nAnswer:") and few.answer == zero.answer
        examples = few.prompt.split(FEWSHOT_DELIMITER)[:-1]
        assert len(examples) == 2
        for ex in examples:
            question, solution = ex[len("Question: "):].split("\nAnswer: ", 1)
            assert question in outside and solution == outside[question].extra["solution"] and "####" in solution
        assert few.extra["until"][0] == "Question:"

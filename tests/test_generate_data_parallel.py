"""Data-parallel generation on one node (``model.backend.data_parallel_size: k``): k local worker
processes each generate shard i/k of a generate step (the ``--shard`` code path), the step commits
exactly the version of a one-process run; a failing worker stops the step naming its shard and log,
and the same command resumes without regenerating finished shards. k is a speed field (no id
changes); validate refuses it where it cannot apply."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from selfaug_compiler.errors import SelfaugError, StepFailed
from selfaug_compiler.generate.data_parallel import worker_devices, worker_envs
from selfaug_compiler.threads import available_cpus
from tests.test_generate_shards import N_ROWS, _committed, _recipe


def _plan(root, dp: int):
    """tests/test_generate_shards.py's S3FT recipe (9 rows, tiny model) with data_parallel_size ``dp``."""
    from selfaug_compiler.compile.planner import PlanBuilder
    from selfaug_compiler.recipe.schema_backends import BackendSpec

    recipe, _ = _recipe(root)
    model = recipe.model.model_copy(update={"backend": BackendSpec(data_parallel_size=dp)})
    return PlanBuilder(recipe.model_copy(update={"model": model}), root).build()


def test_data_parallel_size_is_speed_only(tmp_path):
    one, two = _plan(tmp_path, 1), _plan(tmp_path, 2)
    assert [s.id for s in one.steps] == [s.id for s in two.steps]
    speeds = {s.name: s.speed for s in two.steps}
    assert speeds["generate.self_answer"]["data_parallel_size"] == 2
    assert "data_parallel_size" not in speeds["judge.self_answer"]
    assert all("data_parallel_size" not in s.speed for s in one.steps)


def test_workers_get_their_own_devices_or_threads():
    assert worker_devices("vllm", 2, 2, "cuda", ["3", "5", "6", "7"]) == [["3", "5"], ["6", "7"]]
    assert worker_devices("transformers", 3, 1, "cuda", ["0", "1", "2"]) == [["0"], ["1"], ["2"]]
    assert worker_devices("transformers", 2, 1, "cpu", []) is None
    with pytest.raises(SelfaugError, match="needs 6 GPUs"):
        worker_devices("vllm", 3, 2, "cuda", ["0", "1", "2", "3"])
    envs = worker_envs({"device": "cpu"}, "transformers", 2, env={"PATH": "/bin"})
    share = max(1, available_cpus() // 2)
    assert [e["OMP_NUM_THREADS"] for e in envs] == [str(share)] * 2
    assert all(e["SELFAUG_TORCH_THREADS"] == str(share) and "CUDA_VISIBLE_DEVICES" not in e for e in envs)
    pinned = worker_envs({"device": "cuda", "torch_threads": 1}, "transformers", 2,
                         env={"CUDA_VISIBLE_DEVICES": "4,7"})
    if pinned[0].get("CUDA_VISIBLE_DEVICES") is not None:  # (the driver's count limits the ids on a GPU machine)
        assert [e["CUDA_VISIBLE_DEVICES"] for e in pinned] == ["4", "7"]


def test_two_workers_commit_the_rows_of_one_process_and_resume_after_a_failure(tmp_path):
    pytest.importorskip("torch")
    from selfaug_compiler.runner import Runner, artifact_dir, select_steps
    from tests.tiny_models import build_tiny_model

    build_tiny_model(tmp_path / "tiny")
    one_plan, dp_plan = _plan(tmp_path, 1), _plan(tmp_path, 2)
    one = Runner(one_plan, store_path=tmp_path / "one" / "store.duckdb", recipe_dir=tmp_path, echo=lambda s: None)
    one_ref, one_rows = _committed(one, one_plan)

    dp = Runner(dp_plan, store_path=tmp_path / "dp" / "store.duckdb", recipe_dir=tmp_path, echo=lambda s: None)
    dp.run(select_steps(dp_plan, until=["ingest.toy"]))
    work = artifact_dir(dp.store_path, dp_plan.step("generate.self_answer"))
    root = work / "shards-of-2"
    root.mkdir(parents=True)
    (root / "shard-1").write_text("a file where shard 1's folder goes: its worker fails staging")
    with pytest.raises(StepFailed) as failed:
        _committed(dp, dp_plan)
    message = str(failed.value)
    assert "shard 1/2" in message and str(root / "worker-1.log") in message and "shard 0/2" not in message
    assert "File exists" in message  # the worker's own error, from its log
    assert (root / "shard-0.done").is_file() and not (root / "shard-1.done").exists()
    shard0 = {p.name: p.stat().st_mtime_ns for p in (root / "shard-0").iterdir()}
    log0 = (root / "worker-0.log").stat().st_mtime_ns
    assert shard0

    (root / "shard-1").unlink()
    ref, rows = _committed(dp, dp_plan)  # the same command: only shard 1 runs
    assert {p.name: p.stat().st_mtime_ns for p in (root / "shard-0").iterdir()} == shard0
    assert (root / "worker-0.log").stat().st_mtime_ns == log0  # no worker started for the finished shard
    assert list((root / "shard-1").glob("part-*.parquet"))
    assert ref == one_ref and rows == one_rows  # same version id, same rows and content hashes
    assert len(rows) == N_ROWS


def test_validate_refuses_data_parallel_where_it_cannot_apply(tmp_path, monkeypatch):
    from tests.test_backends_validate import write
    from selfaug_compiler.compile.validation import validate_recipe

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    served = validate_recipe(write(tmp_path, {"kind": "openai", "data_parallel_size": 2})).problems
    [bad] = [p for p in served if p.field == "model.backend.data_parallel_size"]
    assert bad.severity == "error" and "max_concurrency" in (bad.hint or "")
    path = write(tmp_path, {"kind": "transformers", "data_parallel_size": 2})
    recipe = json.loads(path.read_text())
    recipe["eval"] = {"backend": {"data_parallel_size": 2}}
    path.write_text(json.dumps(recipe))
    problems = validate_recipe(path).problems
    assert not [p for p in problems if p.field == "model.backend.data_parallel_size" and p.severity == "error"]
    [ev] = [p for p in problems if p.field == "eval.backend.data_parallel_size"]
    assert ev.severity == "error" and "model.backend" in ev.message
    recipe["execution"] = {"launcher": "slurm", "slurm": {"gpus_per_node": 4}}
    recipe["eval"] = {}
    for backend, fits in (({"kind": "vllm", "tensor_parallel_size": 2, "data_parallel_size": 2}, True),
                          ({"kind": "vllm", "tensor_parallel_size": 2, "data_parallel_size": 3}, False)):
        recipe["model"]["backend"] = backend
        path.write_text(json.dumps(recipe))
        gpus = [p for p in validate_recipe(path).problems if p.field == "model.backend.data_parallel_size"]
        assert (gpus == []) == fits and all("needs 6 GPUs; 4 execution.slurm.gpus_per_node" in p.message for p in gpus)


@pytest.mark.cuda
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None or not os.path.isdir("/proc/driver/nvidia/gpus"),
                    reason="needs a CUDA device and vllm (pip install 'selfaug-compiler[vllm]')")
def test_vllm_backend_passes_dtype_and_the_chat_template():
    from selfaug_compiler.generate.backends import make_backend
    from selfaug_compiler.generate.engine import SamplingParams
    from selfaug_compiler.models.cache import converted_packaged_model

    backend = make_backend("vllm", model=str(converted_packaged_model("smollm2-135m-instruct")),
                           gpu_memory_utilization=0.3, max_model_len=2048, dtype="float32")
    config = getattr(backend.llm.llm_engine, "model_config", None)
    if config is not None:
        assert str(config.dtype) == "torch.float32"
    chat = [[{"role": "user", "content": "Name a colour."}]]
    own = backend.generate(chat, SamplingParams(max_new_tokens=2), seeds=[1])
    backend.chat_template = "{% for m in messages %}" + "pad " * 60 + "{{ m['content'] }}{% endfor %}"
    padded = backend.generate(chat, SamplingParams(max_new_tokens=2), seeds=[1])
    assert padded[0].prompt_tokens >= own[0].prompt_tokens + 40  # LLM.chat(chat_template=) applied it


def _workers_of(marker: str) -> list[int]:
    """Pids of live data-parallel workers whose command line names ``marker`` (this test's folder)."""
    from pathlib import Path

    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if "selfaug_compiler.generate.data_parallel" in cmd and marker in cmd and state != "Z":
            pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
def test_killing_the_parent_leaves_no_workers(tmp_path):
    pytest.importorskip("torch")
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tests.tiny_models import build_tiny_model

    build_tiny_model(tmp_path / "tiny")
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; from tests.test_generate_data_parallel import _plan\n"
        "from selfaug_compiler.runner import Runner, select_steps\n"
        "root = Path(sys.argv[1]); plan = _plan(root, 2)\n"
        "Runner(plan, store_path=root / 'store.duckdb', recipe_dir=root, echo=print)"
        ".run(select_steps(plan, until=['generate.self_answer']))"), str(tmp_path)],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(_workers_of(str(tmp_path))) < 2 and parent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = _workers_of(str(tmp_path))
        assert len(workers) == 2, "the parent did not start its two workers"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 20
    while _workers_of(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _workers_of(str(tmp_path)) == []  # the kernel's parent-death signal ended them


@pytest.mark.cuda
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None or len(os.listdir("/proc/driver/nvidia/gpus")
                    if os.path.isdir("/proc/driver/nvidia/gpus") else []) < 2,
                    reason="needs 2 CUDA devices and vllm (pip install 'selfaug-compiler[vllm]')")
def test_vllm_two_engines_on_two_gpus(tmp_path):
    """data_parallel_size 2 on vllm: one engine per GPU, every row committed once (vLLM does not promise
    batch-invariant text, so rows are compared by key, not with a one-process run)."""
    from selfaug_compiler.compile.planner import PlanBuilder
    from selfaug_compiler.models.cache import converted_packaged_model
    from selfaug_compiler.recipe.schema_backends import BackendSpec
    from selfaug_compiler.runner import Runner, artifact_dir

    recipe, _ = _recipe(tmp_path)
    model = recipe.model.model_copy(update={
        "ref": str(converted_packaged_model("smollm2-135m-instruct")),
        "backend": BackendSpec(kind="vllm", data_parallel_size=2, gpu_memory_utilization=0.3, max_model_len=2048)})
    plan = PlanBuilder(recipe.model_copy(update={"model": model}), tmp_path).build()
    runner = Runner(plan, store_path=tmp_path / "store.duckdb", recipe_dir=tmp_path, echo=lambda s: None)
    ref, rows = _committed(runner, plan)
    assert len(rows) == N_ROWS == len({r["key"] for r in rows})
    assert all(json.loads(r["meta"])["backend"]["backend"] == "vllm" for r in rows)
    root = artifact_dir(runner.store_path, plan.step("generate.self_answer")) / "shards-of-2"
    assert (root / "shard-0.done").is_file() and (root / "shard-1.done").is_file()

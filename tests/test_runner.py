"""The runner: caching by step id, selection, resume after an interruption, run records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from selfaug_compiler import runner as runner_mod
from selfaug_compiler.errors import SelfaugError, StepFailed
from selfaug_compiler.plan import Plan, Step
from selfaug_compiler.runner import Runner, select_steps
from selfaug_compiler.runtime import StepResult
from selfaug_compiler.store import open_store

CALLS: list[str] = []


def fake_execute(ctx):
    """A toy executor: records the call and returns a result derived from its inputs."""
    CALLS.append(ctx.step.name)
    if ctx.step.params.get("fail"):
        raise RuntimeError("boom")
    if ctx.step.params.get("interrupt"):
        raise KeyboardInterrupt
    upstream = sorted(v.metrics["value"] for v in ctx.inputs.values())
    value = ctx.step.params.get("value", 0) + sum(upstream)
    (ctx.work_dir / "out.txt").write_text(str(value))
    return StepResult(metrics={"value": value})


@pytest.fixture()
def fake_kinds(monkeypatch):
    CALLS.clear()
    for kind in runner_mod.EXECUTORS:
        monkeypatch.setitem(runner_mod.EXECUTORS, kind, "tests.test_runner:fake_execute")
    yield


def make_plan(**overrides) -> Plan:
    steps = [
        Step("ingest.t", "ingest", params={"value": 1}),
        Step("generate.x", "generate", params={"value": 10, **overrides.get("generate", {})}, inputs=["ingest.t"]),
        Step("mix", "mix", params={"value": 100}, inputs=["ingest.t", "generate.x"]),
        Step("train", "train", params={"value": 1000, **overrides.get("train", {})}, inputs=["mix"]),
    ]
    plan = Plan(recipe_name="toy", recipe_hash="h", steps=steps)
    plan.assign_ids()
    return plan


def run(plan: Plan, tmp_path: Path, **kwargs):
    r = Runner(plan, store_path=tmp_path / "store.duckdb", recipe_dir=tmp_path, echo=lambda s: None)
    return r.run(select_steps(plan, kwargs.get("only"), kwargs.get("until")))


def test_second_run_reuses_every_step(fake_kinds, tmp_path):
    plan = make_plan()
    first = run(plan, tmp_path)
    assert [o.status for o in first.outcomes] == ["done"] * 4
    assert first.result_of("train").metrics["value"] == 1000 + 100 + 1 + (10 + 1)
    CALLS.clear()
    second = run(plan, tmp_path)
    assert CALLS == []
    assert [o.status for o in second.outcomes] == ["cached"] * 4
    assert second.result_of("train").metrics == first.result_of("train").metrics


def test_changed_param_reruns_only_downstream(fake_kinds, tmp_path):
    run(make_plan(), tmp_path)
    CALLS.clear()
    run(make_plan(generate={"value": 11}), tmp_path)
    assert CALLS == ["generate.x", "mix", "train"]


def test_until_and_only(fake_kinds, tmp_path):
    plan = make_plan()
    assert [s.name for s in select_steps(plan, until=["mix"])] == ["ingest.t", "generate.x", "mix"]
    with pytest.raises(SelfaugError, match="has not run"):
        run(plan, tmp_path, only=["train"])
    run(plan, tmp_path, until=["generate.*"])
    assert CALLS == ["ingest.t", "generate.x"]
    with pytest.raises(SelfaugError, match="no step matches"):
        select_steps(plan, only=["nope"])


def test_failure_is_recorded_and_resumable(fake_kinds, tmp_path):
    bad = make_plan(train={"fail": True})
    with pytest.raises(StepFailed, match="boom"):
        run(bad, tmp_path)
    with open_store(tmp_path / "store.duckdb") as store:
        runs = store.runs()
        assert runs[-1]["status"] == "failed"
        steps = store.run_steps(runs[-1]["run_id"])
        assert {s["step_name"]: s["status"] for s in steps}["train"] == "failed"
    CALLS.clear()
    run(make_plan(), tmp_path)  # fixed: the upstream steps are reused
    assert CALLS == ["train"]


def test_interrupt_marks_run_interrupted(fake_kinds, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(make_plan(train={"interrupt": True}), tmp_path)
    with open_store(tmp_path / "store.duckdb") as store:
        assert store.runs()[-1]["status"] == "interrupted"


def test_sigterm_stops_cleanly_and_next_run_resumes(tmp_path):
    """A real SIGTERM mid-step: the run is recorded as interrupted and the next run resumes."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        from selfaug_compiler import runner as R
        from selfaug_compiler.plan import Plan, Step
        from selfaug_compiler.runtime import StepResult
        mode = sys.argv[1]
        def slow(ctx):
            if ctx.step.name == "train" and mode == "slow":
                print("TRAINING", flush=True)
                time.sleep(60)
            return StepResult(metrics={{"name": ctx.step.name}})
        import __main__
        __main__.slow = slow
        for k in R.EXECUTORS:
            R.EXECUTORS[k] = "__main__:slow"
        steps = [Step("ingest.t", "ingest"), Step("train", "train", inputs=["ingest.t"])]
        plan = Plan(recipe_name="toy", recipe_hash="h", steps=steps)
        plan.assign_ids()
        r = R.Runner(plan, store_path={str(tmp_path / 'store.duckdb')!r}, recipe_dir=".")
        try:
            s = r.run(plan.topological())
            print("STATUSES", [o.status for o in s.outcomes], flush=True)
        except KeyboardInterrupt:
            print("INTERRUPTED", flush=True)
            sys.exit(130)
    """))
    proc = subprocess.Popen([sys.executable, str(script), "slow"], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "TRAINING" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "INTERRUPTED" in out
    done = subprocess.run([sys.executable, str(script), "fast"], capture_output=True, text=True, timeout=60)
    assert "STATUSES ['cached', 'done']" in done.stdout, done.stdout + done.stderr


def raise_disk_full(ctx):
    raise OSError(28, "No space left on device", str(ctx.work_dir / "model.safetensors"))


def raise_memory(ctx):
    raise MemoryError()


@pytest.mark.parametrize("executor, message", [
    ("tests.test_runner:raise_disk_full", "disk is full"),
    ("tests.test_runner:raise_memory", "does not fit in memory"),
])
def test_resource_failures_stop_with_a_clear_message_and_resume(fake_kinds, monkeypatch, tmp_path, executor, message):
    monkeypatch.setitem(runner_mod.EXECUTORS, "train", executor)
    with pytest.raises(StepFailed, match=message) as info:
        run(make_plan(), tmp_path)
    assert info.value.hint  # says what to change
    with open_store(tmp_path / "store.duckdb") as store:
        assert store.verify().ok
        steps = store.run_steps(store.runs()[-1]["run_id"])
        assert {s["step_name"]: s["status"] for s in steps}["train"] == "failed"
    monkeypatch.setitem(runner_mod.EXECUTORS, "train", "tests.test_runner:fake_execute")
    CALLS.clear()
    run(make_plan(), tmp_path)  # fixed: only the failed step runs again
    assert CALLS == ["train"]


def record_work_dir(ctx):
    CALLS.append(str(ctx.work_dir))
    return StepResult(model=str(ctx.work_dir / "model"))


def test_relative_store_path_gives_absolute_artifact_paths(fake_kinds, monkeypatch, tmp_path):
    """Artifact paths outlive the working directory: a later step resolves them from elsewhere."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(runner_mod.EXECUTORS, "train", "tests.test_runner:record_work_dir")
    plan = make_plan()
    Runner(plan, store_path=Path(".selfaug/store.duckdb"), recipe_dir=Path("recipes"), echo=lambda s: None).run(
        select_steps(plan))
    work_dir = Path(CALLS[-1])
    assert work_dir.is_absolute() and work_dir.is_relative_to(tmp_path / ".selfaug" / "artifacts")

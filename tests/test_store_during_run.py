"""The store is readable while a run is in a long step (issue 16, second trial): the runner opens
it per call, never across model work; a second run on the same store is refused by its run lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

# A real Runner in its own process. "ingest.t" commits a dataset; "generate.x" reads it, stages a
# batch, then does its "model work" (waits for the test's release file, at most 60 s), stages a
# second batch and commits both: the shape of a generate step.
DRIVER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from selfaug_compiler import runner as R
from selfaug_compiler.plan import Plan, Step
from selfaug_compiler.runtime import StepResult

store, work = Path(sys.argv[1]), Path(sys.argv[2])

def execute(ctx):
    if ctx.step.kind == "ingest":
        v = ctx.store.commit("t", [{{"key": "a", "prompt": "p1", "response": "r1"}},
                                   {{"key": "b", "prompt": "p2", "response": "r2"}}], step_id=ctx.step.id)
        return StepResult(datasets={{"train": v.ref}})
    rows = ctx.store.read(ctx.input("ingest.t").datasets["train"]).to_pylist()
    ctx.store.stage(ctx.step.id, [{{"key": rows[0]["key"], "prompt": "p1", "response": "own 1"}}])
    (work / "model_work").write_text("started")
    deadline = time.monotonic() + 60
    while not (work / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    ctx.store.stage(ctx.step.id, [{{"key": rows[1]["key"], "prompt": "p2", "response": "own 2"}}])
    v = ctx.store.commit("gen", step_id=ctx.step.id, from_stage=ctx.step.id)
    return StepResult(datasets={{"generated": v.ref}})

import __main__
__main__.execute = execute
for kind in R.EXECUTORS:
    R.EXECUTORS[kind] = "__main__:execute"
plan = Plan(recipe_name="toy", recipe_hash="h",
            steps=[Step("ingest.t", "ingest"), Step("generate.x", "generate", inputs=["ingest.t"])])
plan.assign_ids()
summary = R.Runner(plan, store_path=store, recipe_dir=work).run(plan.topological())
print("STATUSES", [o.status for o in summary.outcomes], flush=True)
"""


def _selfaug(*args: str, wait: str = "5") -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "SELFAUG_STORE_WAIT": wait}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "selfaug_compiler", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    return proc, time.monotonic() - t0


def test_data_ls_reads_the_store_while_a_run_is_in_model_work(tmp_path):
    store = tmp_path / "store.duckdb"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(root=str(ROOT)))
    run = subprocess.Popen([sys.executable, str(driver), str(store), str(tmp_path)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / "model_work").exists():
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the run never reached its model work"
            time.sleep(0.1)
        # a second terminal, mid-step: the reader gets in at once (it would wait for the whole step before)
        ls, seconds = _selfaug("data", "ls", "--store", str(store), "--format", "json")
        assert ls.returncode == 0, ls.stderr
        assert [d["name"] for d in json.loads(ls.stdout)] == ["t"] and seconds < 30
        rows = tmp_path / "rows.jsonl"  # a writer from another process gets in too, between the run's calls
        rows.write_text('{"prompt": "x", "response": "y"}\n')
        imported, _ = _selfaug("data", "import", str(rows), "--dataset", "other", "--store", str(store))
        assert imported.returncode == 0, imported.stderr
        # a second run on the same store is refused by the run lock, naming the first run
        second, _ = _selfaug("run", str(ROOT / "recipes" / "default.yaml"), "--store", str(store), wait="0.2")
        assert second.returncode == 2 and f"is in use by another run (pid {run.pid}: driver.py" in second.stderr, \
            second.stderr
        assert "Traceback" not in second.stderr
        from selfaug_compiler.store import open_store

        with open_store(store, read_only=True) as reader:  # a reader holding the store as the step commits:
            (tmp_path / "release").write_text("go")  # the run's next call waits for it instead of failing
            time.sleep(1.5)
            assert reader.resolve("t").n_rows == 2 and run.poll() is None
        out, err = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0 and "STATUSES ['done', 'done']" in out, out + err
    with open_store(store, read_only=True) as s:  # the step's two batches, committed as one version
        assert s.read("gen")["response"].to_pylist() == ["own 1", "own 2"]
        assert {d["name"] for d in s.datasets()} == {"t", "gen", "other"}
        assert s.verify().ok


def test_the_run_lock_is_let_go_when_the_run_ends_or_is_killed(tmp_path):
    from selfaug_compiler.errors import SelfaugError
    from selfaug_compiler.store.per_use import run_lock

    store = tmp_path / "s.duckdb"
    with run_lock(store):
        pass
    with run_lock(store, wait_s=0):  # let go at the end of the block
        pass
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from selfaug_compiler.store.per_use import run_lock
        with run_lock(__import__("pathlib").Path({str(store)!r})):
            print("held", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SelfaugError, match=rf"in use by another run \(pid {holder.pid}: python -c …\)"):
            with run_lock(store, wait_s=0.2):
                pass
    finally:
        holder.kill()  # SIGKILL: the kernel lets go of the lock
        holder.wait()
    with run_lock(store, wait_s=2):
        pass

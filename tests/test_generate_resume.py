"""Kill -9 a generate step mid-way, run it again: no row missing or duplicated, and the rows staged
before the kill are not generated again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

N_ROWS = 40

CHILD = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    root, mode = Path(sys.argv[1]), sys.argv[2]
    from selfaug_compiler.augment.steps import execute_generate
    from selfaug_compiler.compile.planner import PlanBuilder
    from selfaug_compiler.recipe.schema import *
    from selfaug_compiler.runner import Runner, select_steps
    from selfaug_compiler.runtime import StepContext, StepResult
    from selfaug_compiler.store import open_store

    recipe = Recipe(name="resume", model=ModelSpec(ref=str(root / "tiny"), dtype="float32"),
                    task=TaskSpec(name="toy", source=FileSource(path="toy.jsonl"), answer_type="number",
                                  fields=FieldMap(id="id")),
                    augment=S3ftParams(answer=Greedy(max_new_tokens=24)),
                    execution=ExecutionSpec(device="cpu", generate_batch_size=2))
    plan = PlanBuilder(recipe, root).build()
    store_path = root / "store.duckdb"
    Runner(plan, store_path=store_path, recipe_dir=root, echo=lambda s: None).run(select_steps(plan, until=["ingest.toy"]))
    step = plan.step("generate.self_answer")

    def progress(done, total, *args, **kwargs):
        print("STAGED", done, flush=True)
        if mode == "slow":
            time.sleep(0.15)

    with open_store(store_path) as store:
        ingest = StepResult.from_dict(store.step_result(plan.step("ingest.toy").id))
        ctx = StepContext(plan=plan, step=step, store=store, work_dir=root, recipe_dir=root,
                          inputs={"ingest.toy": ingest}, progress=progress)
        result = execute_generate(ctx)
        rows = store.read(result.datasets["dataset"]).to_pylist()
    print("RESULT", json.dumps({"metrics": result.metrics, "keys": [r["key"] for r in rows]}), flush=True)
''')


def test_kill_and_resume(tmp_path):
    from tests.tiny_models import build_tiny_model

    build_tiny_model(tmp_path / "tiny")
    with open(tmp_path / "toy.jsonl", "w") as f:
        for i in range(N_ROWS):
            f.write(json.dumps({"id": f"q{i}", "question": f"What is {i} plus {i}?", "answer": f"#### {2 * i}"}) + "\n")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), "slow"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    seen = 0
    for line in proc.stdout:
        if line.startswith("STAGED"):
            seen = int(line.split()[1])
            if seen >= 8:
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    assert 8 <= seen < N_ROWS

    out = subprocess.run([sys.executable, str(script), str(tmp_path), "fast"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.split("RESULT", 1)[1])
    metrics, keys = result["metrics"], result["keys"]
    assert sorted(keys) == sorted(f"q{i}" for i in range(N_ROWS))  # none missing, none duplicated
    assert metrics["resumed_rows"] >= seen  # at least what the killed run reported staged
    assert metrics["resumed_rows"] + metrics["generated_rows"] == N_ROWS  # staged rows were not regenerated
    assert metrics["generated_rows"] > 0

    again = subprocess.run([sys.executable, str(script), str(tmp_path), "fast"], capture_output=True, text=True,
                           env=env, timeout=300)
    assert json.loads(again.stdout.split("RESULT", 1)[1])["metrics"].get("cached") is True

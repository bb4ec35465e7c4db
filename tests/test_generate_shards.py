"""Sharded generate steps (`selfaug run --shard i/n`): each shard stages only its rows in its own
files without writing the store, the coordinator refuses while a shard is missing (naming it),
then commits exactly the version a one-process run commits."""

from __future__ import annotations

import json

import pytest

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.generate.shards import Shard, parse_shard, shard_of, shard_root, staged_keys

N_ROWS = 9


def test_parse_shard_and_slurm(monkeypatch):
    assert parse_shard("2/4") == Shard(2, 4) and parse_shard(None) is None
    for bad in ("4/4", "-1/3", "a/b", "3"):
        with pytest.raises(SelfaugError):
            parse_shard(bad)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    with pytest.raises(SelfaugError, match="SLURM array"):
        parse_shard("slurm")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "8")
    assert parse_shard("slurm") == Shard(3, 8)
    keys = [f"q{i}" for i in range(200)]
    assert sorted(k for i in range(4) for k in keys if shard_of(k, 4) == i) == sorted(keys)
    assert len({shard_of(k, 4) for k in keys}) == 4 and shard_of("q7", 4) == shard_of("q7", 4)


def _recipe(root):
    with open(root / "toy.jsonl", "w") as f:
        for i in range(N_ROWS):
            f.write(json.dumps({"id": f"q{i}", "question": f"What is {i} plus {i}?", "answer": f"#### {2 * i}"}) + "\n")
    from selfaug_compiler.compile.planner import PlanBuilder
    from selfaug_compiler.recipe.schema import (
        ExecutionSpec, FieldMap, FileSource, Greedy, ModelSpec, Recipe, S3ftParams, TaskSpec,
    )

    recipe = Recipe(name="shards", model=ModelSpec(ref=str(root / "tiny"), dtype="float32"),
                    task=TaskSpec(name="toy", source=FileSource(path="toy.jsonl"), answer_type="number",
                                  fields=FieldMap(id="id")),
                    augment=S3ftParams(answer=Greedy(max_new_tokens=6)),
                    execution=ExecutionSpec(device="cpu", generate_batch_size=3))
    return recipe, PlanBuilder(recipe, root).build()


def _committed(runner, plan):
    from selfaug_compiler.runner import select_steps
    from selfaug_compiler.store import open_store

    summary = runner.run(select_steps(plan, until=["generate.self_answer"]))
    ref = summary.result_of("generate.self_answer").datasets["dataset"]
    with open_store(runner.store_path, read_only=True) as store:
        return ref, sorted(store.read(ref).to_pylist(), key=lambda r: r["key"])


def test_shards_commit_the_rows_of_one_process(tmp_path):
    pytest.importorskip("torch")
    from selfaug_compiler.runner import Runner, select_steps
    from selfaug_compiler.shard_run import run_shard
    from tests.tiny_models import build_tiny_model

    build_tiny_model(tmp_path / "tiny")
    _, plan = _recipe(tmp_path)
    one = Runner(plan, store_path=tmp_path / "one" / "store.duckdb", recipe_dir=tmp_path, echo=lambda s: None)
    one_ref, one_rows = _committed(one, plan)

    lines: list[str] = []
    sharded = Runner(plan, store_path=tmp_path / "sharded" / "store.duckdb", recipe_dir=tmp_path, echo=lines.append)
    steps = select_steps(plan, until=["generate.self_answer"])
    assert run_shard(sharded, steps, Shard(0, 3)) == [] and "no store" in lines[-1]
    sharded.run(select_steps(plan, until=["ingest.toy"]))  # the coordinator ingests first
    before = (tmp_path / "sharded" / "store.duckdb").stat().st_mtime_ns
    for index in (2, 0):
        [(step, what)] = run_shard(sharded, steps, Shard(index, 3))
        assert step.name == "generate.self_answer" and what.startswith(f"shard {index}/3 staged")
    assert (tmp_path / "sharded" / "store.duckdb").stat().st_mtime_ns == before  # shards never write the store
    with pytest.raises(SelfaugError, match=r"shard\(s\) 1/3 not staged") as missing:
        _committed(sharded, plan)
    assert "--shard 1/3" in missing.value.render()
    [(_, what)] = run_shard(sharded, steps, Shard(1, 3))
    [(_, again)] = run_shard(sharded, steps, Shard(1, 3))  # a re-run shard generates nothing new
    assert "0 generated" in again and "0 generated" not in what

    work = next((tmp_path / "sharded" / "artifacts").glob("generate.self_answer-*"))
    parts = [staged_keys(work, Shard(i, 3)) for i in range(3)]
    assert all(parts) and sum(map(len, parts)) == N_ROWS and set().union(*parts) == {r["key"] for r in one_rows}
    assert all(shard_of(k, 3) == i for i, keys in enumerate(parts) for k in keys)
    assert shard_root(work, 3).is_dir()

    ref, rows = _committed(sharded, plan)
    assert ref == one_ref and rows == one_rows  # same version id, same rows and content hashes
    [(_, committed)] = run_shard(sharded, steps, Shard(0, 3))
    assert committed == "committed"


def test_emitted_slurm_chain_runs_shard_arrays_then_the_coordinator(tmp_path):
    """``generate_shards.sbatch submit``: per sharded generate step a coordinator job for its inputs and
    an array of shards, each after the previous; then slurm.sbatch. SLURM is not installed here: a
    stub sbatch (named as such) records its arguments and answers job ids."""
    import os
    import subprocess

    from selfaug_compiler.compile.emit import render_files, write_files

    recipe, plan = _recipe(tmp_path)
    files = render_files(plan, recipe)
    write_files(tmp_path / "out", files)
    script = tmp_path / "out" / "generate_shards.sbatch"
    stub = tmp_path / "stub_sbatch"
    stub.write_text('#!/usr/bin/env bash\necho "$*" >> "$STUB_LOG"\nwc -l < "$STUB_LOG"\n')
    stub.chmod(0o755)
    env = {**os.environ, "SELFAUG_SBATCH": str(stub), "STUB_LOG": str(tmp_path / "log")}
    run = subprocess.run(["bash", str(script), "submit", "4"], cwd=tmp_path / "out", env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    calls = (tmp_path / "log").read_text().splitlines()
    generate = [s for s in plan.topological() if s.kind == "generate"]
    assert [s.name for s in generate] == ["generate.self_answer", "generate.paraphrase"]
    expected = []
    for k, step in enumerate(generate):
        after = [] if k == 0 else [f"--dependency=afterok:{2 * k}"]
        expected.append(" ".join(["--parsable", *after, str(script), "coordinate", *step.inputs]))
        expected.append(f"--parsable --dependency=afterok:{2 * k + 1} --array=0-3 {script} shard")
    expected.append("--parsable --dependency=afterok:4 slurm.sbatch")
    assert calls == expected
    shard = subprocess.run(["bash", str(script), "shard"], env={**env, "SELFAUG": "echo selfaug"},
                           capture_output=True, text=True, cwd=tmp_path / "out")
    assert shard.stdout.split() == ["selfaug", "run", str(tmp_path / "out" / "plan.json"), "--shard", "slurm"]
    coord = subprocess.run(["bash", str(script), "coordinate", "ingest.toy", "judge.self_answer"],
                           env={**env, "SELFAUG": "echo selfaug"}, capture_output=True, text=True, cwd=tmp_path / "out")
    assert coord.stdout.split()[3:] == ["--until", "ingest.toy", "--until", "judge.self_answer"]

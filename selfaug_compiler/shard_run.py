"""``selfaug run RECIPE --shard i/n``: run shard i of every generate step whose inputs are committed.

A shard writes nothing to the store (no run record, no staging, no version): it opens the store
read-only to find cached inputs and read the step's input rows, closes it before the model
loads, and stages its rows in files under the step's work directory (``generate/shards.py``).
Other steps are the coordinator's (``selfaug run RECIPE`` without ``--shard``), which commits
each sharded generate step once all its shards are done and then runs the rest as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from selfaug_compiler.plan import Step
from selfaug_compiler.runtime import StepContext, StepResult

if TYPE_CHECKING:  # pragma: no cover
    from selfaug_compiler.generate.shards import Shard
    from selfaug_compiler.runner import Runner

SHARDABLE = ("self_answer", "paraphrase", "rewrite")  # one generation per task row


def run_shard(runner: "Runner", steps: list[Step], shard: "Shard") -> list[tuple[Step, str]]:
    """Run ``shard`` of each shardable generate step in ``steps``; returns (step, what happened)."""
    from selfaug_compiler.progress import Progress
    from selfaug_compiler.runner import artifact_dir, executor_for
    from selfaug_compiler.store import open_store
    from selfaug_compiler.threads import apply_torch_threads

    if not runner.store_path.exists():
        runner.echo(f"shard {shard}: no store at {runner.store_path}; run the coordinator first "
                    "(`selfaug run RECIPE --until <the generate step's inputs>`)")
        return []
    outcomes: list[tuple[Step, str]] = []
    for step in steps:
        if step.kind != "generate":
            continue
        with open_store(runner.store_path, read_only=True) as store:
            done = store.step_result(step.id) is not None
            inputs = {name: store.step_result(runner.plan.step(name).id) for name in step.inputs}
        if done:
            outcomes.append((step, "committed"))
        elif step.params.get("purpose") not in SHARDABLE:
            outcomes.append((step, f"left to the coordinator (purpose {step.params.get('purpose')} is not sharded)"))
        elif any(v is None for v in inputs.values()):
            missing = ", ".join(n for n, v in inputs.items() if v is None)
            outcomes.append((step, f"waits for {missing} (the coordinator commits it first)"))
        else:
            runner.echo(f"{step.name}: shard {shard} running ({step.id[:12]})")
            work_dir = artifact_dir(runner.store_path, step)
            work_dir.mkdir(parents=True, exist_ok=True)
            apply_torch_threads(step.speed.get("torch_threads"))
            with open_store(runner.store_path, read_only=True) as store, Progress(f"step {step.name}") as progress:
                ctx = StepContext(plan=runner.plan, step=step, store=store, work_dir=work_dir,
                                  recipe_dir=runner.recipe_dir, progress=progress, shard=shard,
                                  inputs={n: StepResult.from_dict(v) for n, v in inputs.items()})
                result = executor_for(step.kind)(ctx)
            outcomes.append((step, f"shard {shard} staged ({result.metrics.get('generated_rows', 0)} generated, "
                                   f"{result.metrics.get('resumed_rows', 0)} from before)"))
        runner.echo(f"{step.name}: {outcomes[-1][1]}")
    return outcomes

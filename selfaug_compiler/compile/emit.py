"""Files written by ``selfaug compile``: plan.json, run.sh, slurm.sbatch, generate_shards.sbatch (when
the plan has shardable generate steps: SLURM arrays of ``selfaug run --shard``) and, per train step, the
launch files of ``launch_files.py`` (accelerate_config.yaml, ds_config.json under ZeRO,
train_launch.sh; a later stage's train step gets ``.<stage>`` in the names).

Rendered from ``templates/launch/*.j2``. Deterministic: no timestamps, no absolute paths (the
recipe path is stored relative to the output folder), so compiling twice gives byte-identical
files. The launch files are rendered from the train step's ``speed["launch"]``, the same data
the step renders them from when it runs, so what is written here is what runs.
"""

from __future__ import annotations

from pathlib import Path

from selfaug_compiler.compile.launch_files import MAIN_PROCESS_PORT, launch_files, render
from selfaug_compiler.files import write_atomic
from selfaug_compiler.plan import Plan
from selfaug_compiler.recipe.schema import Recipe
from selfaug_compiler.shard_run import SHARDABLE


def render_files(plan: Plan, recipe: Recipe) -> dict[str, str]:
    """File name -> text of everything ``compile`` writes."""
    common = {"recipe_name": recipe.name, "recipe_path": plan.recipe_path}
    ex = recipe.execution
    files = {
        "plan.json": plan.to_json(),
        "run.sh": render("run.sh.j2", steps=plan.topological(), **common),
        "slurm.sbatch": render("slurm.sbatch.j2", slurm=ex.slurm, num_nodes=ex.num_nodes, num_processes=ex.num_processes,
                               launch_script="train_launch.sh", port=MAIN_PROCESS_PORT, **common),
    }
    generate = [{"name": s.name, "inputs": s.inputs} for s in plan.topological()
                if s.kind == "generate" and s.params.get("purpose") in SHARDABLE]
    if generate:  # the generate steps as SLURM arrays of shards (generate/shards.py)
        files["generate_shards.sbatch"] = render("generate_shards.sbatch.j2", slurm=ex.slurm, generate=generate,
                                                 shards=max(2, ex.num_nodes), **common)
    for step in plan.topological():
        if step.kind == "train" and "launch" in step.speed:
            files.update(launch_files(step.speed["launch"]))
    return files


def write_files(out_dir: Path, files: dict[str, str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_atomic(out_dir / name, text, executable=name.endswith((".sh", ".sbatch")))
            for name, text in files.items()]

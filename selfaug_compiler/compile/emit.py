"""Files written by ``selfaug compile``: plan.json, run.sh, accelerate_config.yaml, slurm.sbatch.

Rendered from ``templates/launch/*.j2`` with the execution settings. Deterministic: no
timestamps, no absolute paths (the recipe path is stored relative to the output folder), so
compiling twice gives byte-identical files. Files are written to a temporary name and renamed,
so a crash never leaves a half-written plan.
"""

from __future__ import annotations

from pathlib import Path

from selfaug_compiler.compile.templates import PROJECT_TEMPLATES
from selfaug_compiler.files import write_atomic
from selfaug_compiler.plan import Plan
from selfaug_compiler.recipe.schema import Recipe

LAUNCH_TEMPLATES = PROJECT_TEMPLATES / "launch"
MIXED_PRECISION = {"bfloat16": "bf16", "float16": "fp16", "float32": "no", "auto": "no"}


def _render(name: str, **context: object) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(LAUNCH_TEMPLATES)), undefined=StrictUndefined,
                      keep_trailing_newline=True, autoescape=False)
    return env.get_template(name).render(**context)


def accelerate_context(recipe: Recipe) -> dict[str, object]:
    ex = recipe.execution
    machines = ex.num_nodes
    processes = ex.num_processes * machines
    use_cpu = ex.device == "cpu"
    if processes <= 1:
        distributed = "NO"
    else:
        distributed = "MULTI_CPU" if use_cpu else "MULTI_GPU"
    return {"distributed_type": distributed, "num_machines": machines, "num_processes": processes,
            "mixed_precision": MIXED_PRECISION[recipe.model.dtype], "use_cpu": use_cpu}


def render_files(plan: Plan, recipe: Recipe) -> dict[str, str]:
    """File name -> text of everything ``compile`` writes."""
    common = {"recipe_name": recipe.name, "recipe_path": plan.recipe_path}
    return {
        "plan.json": plan.to_json(),
        "run.sh": _render("run.sh.j2", steps=plan.topological(), **common),
        "accelerate_config.yaml": _render("accelerate_config.yaml.j2", **accelerate_context(recipe), **common),
        "slurm.sbatch": _render("slurm.sbatch.j2", slurm=recipe.execution.slurm, num_nodes=recipe.execution.num_nodes, **common),
    }


def write_files(out_dir: Path, files: dict[str, str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_atomic(out_dir / name, text, executable=name.endswith((".sh", ".sbatch")))
            for name, text in files.items()]

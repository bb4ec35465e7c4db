"""The files that launch a train step: accelerate config, DeepSpeed JSON, the per-machine launcher.

``launch_settings`` takes what a recipe says about launching one train step (execution section
and the stage's train strategy) into a plain dict; the planner stores it in the train step's
``speed["launch"]`` and ``compile`` renders the files from it with ``launch_files``. At run time
the train step renders the same dict with the same function into its work folder and launches
with those files (``train/launch.py``), so the files ``compile`` writes are byte for byte the
ones a run uses. Torch-free (``validate``/``compile`` import it).

``accelerate_config.yaml``: ``distributed_type`` NO (one process, ddp), MULTI_GPU (several
processes under DDP; also on CPU, where accelerate's torchrun launcher is what starts several
processes and each worker joins a gloo group), FSDP (``fsdp_config``: FSDP2, transformer-layer
wrapping from the model's ``_no_split_modules``, sharded checkpoints, rank-0 loading) or DEEPSPEED
(``deepspeed_config_file: ds_config.json``). ``train_launch.sh JOB``: ``accelerate launch
--config_file`` with that config on one machine, ``--machine_rank $SLURM_NODEID`` (0 outside
SLURM), the main process address and port from ``$SELFAUG_MAIN_PROCESS_IP``/``_PORT`` (set by
``slurm.sbatch``), ``--num_machines``/``--num_processes`` from the recipe; with
``SELFAUG_LAUNCH_ECHO=1`` it prints the command instead of running it.
"""

from __future__ import annotations

import json
from typing import Any

from selfaug_compiler.compile.templates import PROJECT_TEMPLATES
from selfaug_compiler.recipe.schema import Recipe, TrainSpec

LAUNCH_TEMPLATES = PROJECT_TEMPLATES / "launch"
MAIN_PROCESS_PORT = 29500  # multi-machine runs (SLURM); one machine takes a free port


def render(name: str, **context: object) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(LAUNCH_TEMPLATES)), undefined=StrictUndefined,
                      keep_trailing_newline=True, autoescape=False)
    return env.get_template(name).render(**context)


def launch_settings(recipe: Recipe, train: TrainSpec, step_name: str = "train") -> dict[str, Any]:
    """Everything the launch files of one train step depend on (JSON data, speed only). Files are
    named ``accelerate_config.yaml`` etc. when the step launches as the recipe's ``train`` section
    says, ``accelerate_config.<stage>.yaml`` for a stage whose own train section launches otherwise."""
    settings = _settings(recipe, train, "")
    if settings != _settings(recipe, recipe.train, ""):
        settings = _settings(recipe, train, "." + step_name.removeprefix("train."))
    return settings


def _settings(recipe: Recipe, train: TrainSpec, sfx: str) -> dict[str, Any]:
    ex = recipe.execution
    world = ex.num_processes * ex.num_nodes
    micro = ex.micro_batch_size
    if train.batch_size >= world:  # as train/batches.plan_batches splits a global batch
        micro = max(1, min(micro, train.batch_size // world))
    zero = train.strategy in ("zero2", "zero3")
    return {
        "recipe": recipe.name, "launcher": ex.launcher, "device": ex.device, "num_nodes": ex.num_nodes,
        "num_processes": ex.num_processes, "strategy": train.strategy,
        "gradient_checkpointing": train.gradient_checkpointing,
        "micro_batch_size": micro, "accumulation": max(1, train.batch_size // (micro * world)),
        "max_grad_norm": train.max_grad_norm,
        "config": f"accelerate_config{sfx}.yaml", "script": f"train_launch{sfx}.sh",
        "deepspeed_config": f"ds_config{sfx}.json" if zero else None,
        **({"slurm": {"cpus_per_task": ex.slurm.cpus_per_task, "gpus_per_node": ex.slurm.gpus_per_node}}
           if ex.launcher == "slurm" else {}),
    }


def in_process(settings: dict[str, Any]) -> bool:
    """Train in the step's own process (no launcher): launcher local, one process, DDP."""
    return (settings["launcher"] == "local" and settings["num_processes"] * settings["num_nodes"] == 1
            and settings["strategy"] == "ddp")


def distributed_type(settings: dict[str, Any]) -> str:
    strategy = settings["strategy"]
    if strategy == "fsdp":
        return "FSDP"
    if strategy in ("zero2", "zero3"):
        return "DEEPSPEED"
    return "MULTI_GPU" if settings["num_processes"] * settings["num_nodes"] > 1 else "NO"


def deepspeed_json(settings: dict[str, Any]) -> dict[str, Any]:
    """DeepSpeed ZeRO-2/3 config: concrete batch numbers (micro x accumulation x world = the
    recipe's global batch), clipping from train.max_grad_norm. No bf16/fp16 section: accelerate's
    ``DeepSpeedPlugin.set_mixed_precision`` writes it from the Accelerator's mixed precision (the
    training engine's compute dtype), so the two cannot disagree."""
    stage = 3 if settings["strategy"] == "zero3" else 2
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True,
                            "reduce_bucket_size": 500_000_000, "allgather_bucket_size": 500_000_000}
    if stage == 3:
        zero.update({"stage3_gather_16bit_weights_on_model_save": True, "stage3_prefetch_bucket_size": 50_000_000,
                     "stage3_param_persistence_threshold": 100_000})
    world = settings["num_processes"] * settings["num_nodes"]
    return {
        "train_micro_batch_size_per_gpu": settings["micro_batch_size"],
        "gradient_accumulation_steps": settings["accumulation"],
        "train_batch_size": settings["micro_batch_size"] * settings["accumulation"] * world,
        "gradient_clipping": settings["max_grad_norm"],
        "zero_optimization": zero,
        "steps_per_print": 1_000_000_000, "wall_clock_breakdown": False,
    }


def local_settings(num_processes: int, device: str) -> dict[str, Any]:
    """Launch settings without a recipe (``train_model`` called directly): defaults, DDP on this machine."""
    from selfaug_compiler.recipe.schema import ExecutionSpec

    recipe = Recipe.model_construct(name="train", execution=ExecutionSpec(num_processes=num_processes, device=device),
                                    train=TrainSpec(), model=Recipe.model_fields["model"].default)
    return _settings(recipe, recipe.train, "")


def launch_files(settings: dict[str, Any]) -> dict[str, str]:
    """File name -> text of the launch files of one train step."""
    world = settings["num_processes"] * settings["num_nodes"]
    context = {**settings, "recipe_name": settings["recipe"], "distributed_type": distributed_type(settings),
               "world": world, "use_cpu": settings["device"] == "cpu", "port": MAIN_PROCESS_PORT}
    files = {settings["config"]: render("accelerate_config.yaml.j2", **context),
             settings["script"]: render("train_launch.sh.j2", **context)}
    if settings["deepspeed_config"]:
        files[settings["deepspeed_config"]] = json.dumps(deepspeed_json(settings), indent=2, sort_keys=True) + "\n"
    return files

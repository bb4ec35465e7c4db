"""validate's checks of the training-engine and launch settings (issue 13): a setting that cannot
apply where the run will go is refused with the reason, never dropped at run time.

"Where the run will go" is ``execution.device`` as this machine resolves it (``precision``): a
recipe that says ``device: cuda`` is meant for a GPU machine and validates on a laptop (the scale
examples do); ``auto`` on a machine without CUDA means CPU. Libraries that only the target machine
needs (DeepSpeed, bitsandbytes) are a warning when missing here, an error when the device is CPU
(where they cannot run at all). Torch-free.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from selfaug_compiler.precision import cpu_has_fast_bf16, resolve_device_name


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_launch(checker: Any) -> None:
    from selfaug_compiler.compile.backend_checks import check_backend, check_eval_backend

    check_backend(checker)  # model.backend (issue 12): installed, consistent, --online reachable
    check_eval_backend(checker)  # eval.backend: an in-process engine that can load the checkpoints
    recipe = checker.recipe
    ex = recipe.execution
    device = resolve_device_name(ex.device)
    on_cpu = not device.startswith("cuda")
    where = f"execution.device {ex.device}" + (" (no CUDA GPU on this machine)" if ex.device == "auto" and on_cpu else "")
    if ex.num_nodes > 1 and ex.launcher != "slurm":
        checker.add(("execution", "num_nodes"), f"{ex.num_nodes} machines need launcher: slurm (one launcher per node)",
                    expected="execution.launcher: slurm, or num_nodes: 1", found=f"launcher: {ex.launcher}",
                    hint="set execution.launcher: slurm and submit the compiled slurm.sbatch")
    if ex.launcher == "slurm" and not on_cpu and ex.slurm.gpus_per_node < ex.num_processes:
        checker.add(("execution", "slurm", "gpus_per_node"), f"{ex.num_processes} processes per node need "
                    f"{ex.num_processes} GPUs per node, the job asks for {ex.slurm.gpus_per_node}",
                    expected=f"gpus_per_node >= execution.num_processes ({ex.num_processes})",
                    found=str(ex.slurm.gpus_per_node), hint="raise execution.slurm.gpus_per_node or lower num_processes")
    for i, stage in enumerate(recipe.stage_list()):
        _check_train(checker, checker.train_path(i), stage.train, on_cpu, where)


def _check_train(checker: Any, at: tuple[Any, ...], train: Any, on_cpu: bool, where: str) -> None:
    if train.strategy in ("zero2", "zero3"):
        if on_cpu:
            checker.add((*at, "strategy"), f"DeepSpeed ZeRO ({train.strategy}) needs CUDA; this run would train on {where}",
                        expected="ddp on CPU", found=train.strategy,
                        hint="set execution.device: cuda on a GPU machine, or train.strategy: ddp")
        elif not _installed("deepspeed"):
            checker.add((*at, "strategy"), f"train.strategy {train.strategy} needs DeepSpeed, which is not installed here",
                        severity="warning", expected="the deepspeed package on the machine that trains",
                        found="no deepspeed module", hint="pip install deepspeed on the training machine")
    if train.strategy == "fsdp" and on_cpu:
        checker.add((*at, "strategy"), "FSDP does not run on CPU (accelerate 1.15 makes CPU processes a gloo "
                    f"MULTI_CPU group and wraps the model in DDP, the FSDP settings unused); this run would train on {where}",
                    expected="ddp on CPU", found="fsdp", hint="set execution.device: cuda on a GPU machine, or train.strategy: ddp")
    if train.lora.load_in_4bit:
        if train.method != "lora":
            checker.add((*at, "lora", "load_in_4bit"), "a 4-bit base (QLoRA) only trains LoRA adapters",
                        expected="train.method: lora", found=f"method: {train.method}", hint="set train.method: lora")
        _needs_bitsandbytes(checker, (*at, "lora", "load_in_4bit"), "QLoRA (4-bit NF4 base)", on_cpu, where)
    if train.optimizer == "adamw_8bit":
        _needs_bitsandbytes(checker, (*at, "optimizer"), "the 8-bit AdamW optimizer", on_cpu, where)
    if train.weight_dtype == "bf16" and on_cpu and not cpu_has_fast_bf16():
        checker.add((*at, "weight_dtype"), f"bf16 weights on a CPU without native bf16 ({where}) run emulated, several "
                    "times slower than fp32", severity="warning", expected="fp32 or auto on this CPU", found="bf16",
                    hint="set train.weight_dtype: auto (bf16 where the hardware runs it)")


def _needs_bitsandbytes(checker: Any, at: tuple[Any, ...], what: str, on_cpu: bool, where: str) -> None:
    if on_cpu:
        checker.add(at, f"{what} needs CUDA (bitsandbytes kernels); this run would train on {where}",
                    expected="execution.device: cuda on a GPU machine", found=where,
                    hint="drop the setting on CPU (train.lora.load_in_4bit: false, train.optimizer: adamw)")
    elif not _installed("bitsandbytes"):
        checker.add(at, f"{what} needs bitsandbytes, which is not installed here", severity="warning",
                    expected="the bitsandbytes package on the machine that trains", found="no bitsandbytes module",
                    hint="pip install bitsandbytes on the training machine")

"""Training-engine and launch fields of the recipe schema (issue 13): the types and help texts
that ``schema.py`` uses, one line per field there (``schema.py`` is at its size limit).

Which are speed fields and which content fields: ``strategy``, ``gradient_checkpointing`` and
``execution.num_nodes`` only change how the same computation is spread and scheduled (speed
fields, out of step ids); ``weight_dtype``, ``optimizer`` and ``lora.load_in_4bit`` change the
numbers a training step produces (``added_field``s: recipes that leave them at their default keep
their ids).
"""

from __future__ import annotations

from typing import Any, Literal

Strategy = Literal["ddp", "fsdp", "zero2", "zero3"]
WeightDtype = Literal["fp32", "bf16", "auto"]
Optimizer = Literal["adamw", "adamw_8bit"]

STRATEGY_HELP = ("how training is spread over processes: ddp (every process holds the whole model), fsdp "
                 "(parameters, gradients and optimizer states sharded, torch FSDP), zero2 (gradients and "
                 "optimizer states sharded, DeepSpeed ZeRO-2), zero3 (all three sharded, DeepSpeed ZeRO-3)")
GRADIENT_CHECKPOINTING_HELP = ("recompute activations in the backward pass instead of keeping them: less "
                               "memory, about a third more compute")
WEIGHT_DTYPE_HELP = ("dtype the trained weights are held in: fp32 (fp32 master weights, autocast to model.dtype), "
                     "bf16 (bf16 weights, gradients and AdamW moments, no fp32 copy; CUDA or CPUs with native bf16; "
                     "LoRA adapters stay fp32), "
                     "auto (bf16 where supported, else fp32)")
OPTIMIZER_HELP = "adamw (torch AdamW, 2 fp32 states per parameter) or adamw_8bit (bitsandbytes AdamW8bit, CUDA only)"
LOAD_IN_4BIT_HELP = "QLoRA: load the frozen base in 4-bit NF4 (bitsandbytes, CUDA only); needs train.method lora"
NUM_NODES_HELP = ("machines the training steps run on (execution.num_processes is per machine); more than one "
                  "needs launcher: slurm")


def move_slurm_nodes(data: Any) -> Any:
    """``execution.slurm.nodes`` (before ``execution.num_nodes`` existed) -> ``execution.num_nodes``:
    one source of truth for the number of machines."""
    if not isinstance(data, dict) or not isinstance(data.get("slurm"), dict) or "nodes" not in data["slurm"]:
        return data
    data = dict(data)
    slurm = dict(data["slurm"])
    nodes = slurm.pop("nodes")
    if "num_nodes" in data and data["num_nodes"] != nodes:
        raise ValueError(f"execution.slurm.nodes ({nodes}) and execution.num_nodes ({data['num_nodes']}) "
                         "disagree; give only execution.num_nodes")
    data["num_nodes"], data["slurm"] = nodes, slurm
    return data

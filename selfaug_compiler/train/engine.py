"""What the loop asks accelerate and the libraries for: the Accelerator, the model as the recipe
says to hold it, the optimizer, and checkpoints of sharded strategies.

- **Strategy** (``train.strategy``) comes from accelerate's own config: ``accelerate launch
  --config_file accelerate_config.yaml`` (``compile/launch_files.py``) sets the environment that
  ``Accelerator()`` reads (its FSDP plugin or DeepSpeed plugin); the loop then ``prepare``s the
  model, optimizer and scheduler together, as FSDP2 and DeepSpeed need.
- **Weights** (``train.weight_dtype``): fp32 master weights (autocast to ``model.dtype``), or bf16
  weights and gradients (``auto``: bf16 where the device runs it natively); torch AdamW keeps its
  moments in the parameter's dtype (bf16 under bf16 weights; LoRA adapters stay fp32: peft's).
- **QLoRA** (``train.lora.load_in_4bit``): the frozen base in NF4 through transformers'
  ``BitsAndBytesConfig``, ``peft.prepare_model_for_kbit_training``, then LoRA (CUDA only;
  ``validate`` refuses it elsewhere).
- **Optimizer** (``train.optimizer``): torch AdamW, or bitsandbytes' ``AdamW8bit`` (CUDA).
- **Gradient checkpointing**: ``model.activation_checkpointing_enable`` (transformers 5's name of
  ``gradient_checkpointing_enable``; non-reentrant, so frozen
  inputs under LoRA need no ``enable_input_require_grads``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from selfaug_compiler.errors import StepFailed


def accelerate_mixed_precision(compute_dtype: Any) -> str:
    import torch

    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(compute_dtype, "no")


def make_accelerator(cpu: bool, compute_dtype: Any) -> Any:
    """The Accelerator (strategy plugins from the launcher's environment). The scheduler steps once
    per optimizer step (``step_scheduler_with_optimizer=False``): the loop's steps are global
    steps already, so accelerate must not step it once per process."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mixed = accelerate_mixed_precision(compute_dtype)
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != mixed:
        # an earlier in-process run of this process chose another precision: accelerate keeps one
        # state per process, so forget it (the process group, PartialState, stays)
        AcceleratorState._reset_state()
    return Accelerator(cpu=cpu, mixed_precision=mixed, step_scheduler_with_optimizer=False)


def weight_dtype(spec: Any, device_type: str) -> Any:
    """The dtype the trained weights are held in (``train.weight_dtype``)."""
    import torch

    from selfaug_compiler.models.loading import resolve_dtype

    if spec.weight_dtype == "bf16":
        return torch.bfloat16
    if spec.weight_dtype == "auto" and resolve_dtype("auto", device_type) == torch.bfloat16:
        return torch.bfloat16
    return torch.float32


def load_for_training(job: Any, spec: Any, device: Any, compute_dtype: Any) -> Any:
    """``LoadedModel`` with weights in ``train.weight_dtype`` (NF4 base under QLoRA). Under FSDP
    the model stays where transformers loads it (CPU on local rank 0, the meta device on the
    others with ``fsdp_cpu_ram_efficient_loading``): accelerate's ``prepare`` shards it, moves it
    to the device and broadcasts rank 0's weights."""
    from selfaug_compiler.models.loading import load_model

    dtype = weight_dtype(spec, device.type)
    if spec.method == "lora" and spec.lora.load_in_4bit:
        loaded = _load_4bit(job, device, compute_dtype)
    elif os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        loaded = from_pretrained(job, dtype)
    else:
        loaded = load_model(job.base, revision=job.base_revision, dtype=str(dtype).replace("torch.", ""),
                            device=str(device), trust_remote_code=job.trust_remote_code,
                            chat_template=job.chat_template, prompt_format=job.prompt_format)
    if spec.gradient_checkpointing and os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "").lower() != "true":
        # (under FSDP, accelerate's fsdp_activation_checkpointing from the compiled config does it)
        model = loaded.model
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x name
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        loaded.model.config.use_cache = False
    return loaded


def from_pretrained(job: Any, dtype: Any, **kwargs: Any) -> Any:
    """``LoadedModel`` straight from ``from_pretrained`` (no move to a device; ``kwargs`` such as
    ``quantization_config``/``device_map`` passed on), tokenizer and fingerprint as ``load_model``."""
    from transformers import AutoModelForCausalLM

    from selfaug_compiler.models.fingerprint import folder_fingerprint
    from selfaug_compiler.models.loading import LoadedModel, load_tokenizer, model_folder

    parsed, folder = model_folder(job.base, revision=job.base_revision)
    if isinstance(folder, Path) and (folder / "adapter_config.json").is_file():
        raise StepFailed("train", f"the base {job.base} is a LoRA adapter; under FSDP or QLoRA the base must be "
                         "a full model folder", hint="train the earlier stage with method full, or merge the "
                         "adapter into its base and point model.ref at the merged folder")
    revision = job.base_revision if parsed.kind == "hub" else None
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, revision=revision,
                                                 trust_remote_code=job.trust_remote_code, **kwargs)
    tokenizer = load_tokenizer(folder, trust_remote_code=job.trust_remote_code, chat_template=job.chat_template,
                               revision=revision, prompt_format=job.prompt_format)
    fingerprint = folder_fingerprint(folder) if isinstance(folder, Path) else f"hub:{folder}@{job.base_revision or 'main'}"
    return LoadedModel(model, tokenizer, str(parsed), fingerprint, str(model.device), dtype,
                       folder if isinstance(folder, Path) else None)


def _load_4bit(job: Any, device: Any, compute_dtype: Any) -> Any:
    import torch

    if device.type != "cuda":
        raise StepFailed("train", "train.lora.load_in_4bit (QLoRA) needs a CUDA device (bitsandbytes NF4)",
                         hint="set train.lora.load_in_4bit: false, or run on a CUDA machine")
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    compute = compute_dtype if compute_dtype in (torch.bfloat16, torch.float16) else torch.float32
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=compute)
    loaded = from_pretrained(job, compute, quantization_config=quant, device_map={"": device})
    loaded.model = prepare_model_for_kbit_training(loaded.model, use_gradient_checkpointing=False)
    return loaded


def build_optimizer(model: Any, spec: Any) -> Any:
    """AdamW (torch, or bitsandbytes 8-bit); no weight decay on biases and norm weights (1-d tensors)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": spec.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if spec.optimizer == "adamw_8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise StepFailed("train", f"train.optimizer adamw_8bit needs bitsandbytes ({exc})",
                             hint="pip install bitsandbytes on a CUDA machine, or set train.optimizer: adamw") from None
        return bnb.optim.AdamW8bit(groups, lr=spec.lr)
    return torch.optim.AdamW(groups, lr=spec.lr)


def check_strategy(acc: Any, spec: Any) -> None:
    """Refuse to run a strategy accelerate did not set up (never train DDP when FSDP was asked for).
    accelerate 1.15 applies its FSDP and DeepSpeed plugins only on accelerator devices: on CPU
    (``use_cpu``, MULTI_CPU) it leaves them out, although torch's FSDP2 itself runs on gloo."""
    from accelerate.utils import DistributedType

    strategy = spec.strategy
    wanted = {"fsdp": DistributedType.FSDP, "zero2": DistributedType.DEEPSPEED,
              "zero3": DistributedType.DEEPSPEED}.get(strategy)
    if wanted is not None and acc.distributed_type != wanted:
        raise StepFailed("train", f"train.strategy {strategy} was not set up by accelerate (it runs "
                         f"{acc.distributed_type.value} on {acc.device.type}); accelerate applies FSDP and "
                         "DeepSpeed on CUDA devices only",
                         hint="use train.strategy: ddp on CPU, or launch through the compiled train_launch.sh "
                              "on GPUs")
    if wanted is not None and spec.loss.kind == "kl" and spec.loss.beta and spec.method != "lora":
        # the frozen reference copy is neither sharded nor loaded the way FSDP/ZeRO load the model
        raise StepFailed("train", f"train.loss kind kl with method {spec.method} needs a frozen copy of the base "
                         f"model beside it, which the engine does not shard under train.strategy {strategy}",
                         hint="use method lora (its base is the same module, adapters off), or strategy ddp")


def sharded(acc: Any) -> bool:
    """True under FSDP or DeepSpeed: checkpoints through accelerate's ``save_state`` (sharded).
    ``SELFAUG_TRAIN_SAVE_STATE=1`` takes that path under DDP too (how CPU tests exercise it)."""
    from accelerate.utils import DistributedType

    return (acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
            or os.environ.get("SELFAUG_TRAIN_SAVE_STATE") == "1")


def full_state_dict(acc: Any, model: Any) -> dict[str, Any] | None:
    """The whole model's state dict gathered from the shards (every rank must call; rank 0 gets it)."""
    return acc.get_state_dict(model) if sharded(acc) else None

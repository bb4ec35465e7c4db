"""validate's training-memory estimate: what one training process holds at its peak, following
what the run loads (issue 13.4). Bytes per process, by part:

- ``weights``: every parameter at ``train.weight_dtype`` (fp32: 4 bytes, the fp32 master copy the
  loop autocasts from; bf16: 2 bytes, no fp32 copy; auto: 2 where the run computes in bf16, else
  4). QLoRA (``lora.load_in_4bit``): the layers' linear weights in 4-bit NF4 with their block
  scales (~0.53 bytes a parameter), embeddings and head at the compute dtype. LoRA adapters in fp32.
- ``gradients``: one per trainable parameter at its dtype (fp32 adapters, else the weight dtype).
- ``optimizer``: AdamW's two moments in the trainable parameter's dtype (torch AdamW allocates
  them like the parameter: 8 bytes under fp32 weights and for LoRA's fp32 adapters, 4 under bf16
  weights), 8-bit AdamW's two 1-byte states plus block scales (~2.1 bytes).
- sharding over the ``world`` = processes x machines: FSDP and ZeRO-3 divide weights, gradients and
  optimizer states; ZeRO-2 gradients and optimizer states; DDP nothing.
- ``activations`` of one micro-batch at the compute dtype, for the layers the backward pass goes
  through (Korthikanti et al. 2022: 34 x hidden bytes per token per layer at 16 bits, plus the
  attention scores 5 x heads x seq where attention is not fused, i.e. on CPU). With gradient
  checkpointing only each layer's input is kept (hidden x bytes per token per layer) plus one
  layer's full activations while it is recomputed.
- ``logits`` of a micro-batch (compute dtype, the fp32 copy for the loss and its gradient).
- ``runtime``: the process before any model (Python, torch, transformers, accelerate, peft):
  measured 0.37 GiB peak RSS on CPU; on CUDA the CUDA context, ~0.5 GiB of device memory.

Torch-free (validate imports it).
"""

from __future__ import annotations

from selfaug_compiler.compile.model_checks import parse_layers
from selfaug_compiler.compile.model_info import ModelInfo
from selfaug_compiler.precision import DTYPE_BYTES
from selfaug_compiler.recipe.schema import TrainSpec

GIB = 1024**3
RUNTIME_BYTES = {"cpu": int(0.37 * GIB), "cuda": int(0.5 * GIB)}
NF4_BYTES = 0.53  # 4 bits + an fp32 absmax per 64 (double-quantized: ~0.127 bits) + the quant state
ADAM8_BYTES = 2.1  # two uint8 states + an fp32 scale per 2048-element block (each state)


def trainable_params(model: ModelInfo, train: TrainSpec) -> int:
    h, layers = model.hidden_size, model.num_layers
    kv = model.num_kv_heads * (h // max(model.num_heads, 1))
    ff = model.intermediate_size or 4 * h
    if train.method == "lora":
        shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                  "gate_proj": (h, ff), "up_proj": (h, ff), "down_proj": (ff, h)}
        per_layer = sum(train.lora.r * sum(shapes.get(t, (h, h))) for t in train.lora.target_modules)
        return per_layer * layers
    total = model.approx_params()
    if train.method == "freeze":
        frozen = frozen_layers(model, train)
        per_layer = (total - model.vocab_size * h) // max(layers, 1)
        total -= len(frozen) * per_layer + (model.vocab_size * h if train.freeze.embeddings else 0)
    return total


def frozen_layers(model: ModelInfo, train: TrainSpec) -> list[int]:
    try:
        return [n for n in parse_layers(train.freeze.layers) if 0 <= n < model.num_layers]
    except ValueError:
        return []


def backward_layers(model: ModelInfo, train: TrainSpec) -> int:
    """Layers whose activations the backward pass needs: from the first trainable one up."""
    if train.method != "freeze" or not train.freeze.embeddings:
        return model.num_layers
    frozen = set(frozen_layers(model, train))
    first = next((i for i in range(model.num_layers) if i not in frozen), model.num_layers)
    return model.num_layers - first


def weight_bytes(train: TrainSpec, dtype: str) -> int:
    """Bytes a trained weight is held in (``dtype``: the run's compute dtype)."""
    if train.weight_dtype == "bf16" or (train.weight_dtype == "auto" and dtype == "bfloat16"):
        return 2
    return 4


def train_memory(model: ModelInfo, train: TrainSpec, dtype: str, device: str, micro_batch: int, seq: int,
                 world: int = 1) -> dict[str, float]:
    """Bytes by part for one training process (see the module docstring)."""
    act = DTYPE_BYTES[dtype]
    params, trainable = model.approx_params(), trainable_params(model, train)
    h, wb = model.hidden_size, weight_bytes(train, dtype)
    lora = train.method == "lora"
    if lora and train.lora.load_in_4bit:
        embed = model.vocab_size * h * (1 if model.tie_embeddings else 2)
        weights = (params - embed) * NF4_BYTES + embed * act
    else:
        weights = params * wb
    weights += trainable * 4 if lora else 0
    gradients = trainable * (4 if lora else wb)
    optimizer = trainable * (ADAM8_BYTES if train.optimizer == "adamw_8bit" else 2 * (4 if lora else wb))
    shard = max(world, 1)
    if train.strategy in ("fsdp", "zero3"):
        weights, gradients, optimizer = weights / shard, gradients / shard, optimizer / shard
    elif train.strategy == "zero2":
        gradients, optimizer = gradients / shard, optimizer / shard
    attention = 0 if device.startswith("cuda") else 5 * model.num_heads * seq
    per_token_layer = (34 * h + attention) * act / 2
    layers = backward_layers(model, train)
    if train.gradient_checkpointing:
        activations = micro_batch * seq * (layers * h * act + per_token_layer)
    else:
        activations = micro_batch * seq * layers * per_token_layer
    return {
        "weights": weights,
        "gradients": gradients,
        "optimizer": optimizer,
        "activations": activations,
        "logits": micro_batch * seq * model.vocab_size * (act + 4 + 4),
        "runtime": RUNTIME_BYTES["cuda" if device.startswith("cuda") else "cpu"],
    }

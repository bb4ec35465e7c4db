"""The seeded data order and how each global batch is split over processes and micro-batches.

The examples form one stream: epoch after epoch, each shuffled with ``Random(seed, epoch)``.
Optimizer step ``s`` takes stream items ``[s*B, (s+1)*B)`` (``B`` = global batch), so every step
is a full batch and the order depends on the seed alone, never on process count or micro-batch
size. A global batch is sorted by length (less padding), cut into ``processes x accumulation``
micro-batches, and micro-batch ``j`` goes to rank ``j % processes``: ranks see disjoint shards.
The loss is summed over target tokens and divided by the global batch's target-token count, so
the gradient is the same however the batch is split.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.train.formatting import IGNORE, Example


@dataclass(frozen=True)
class BatchPlan:
    global_batch: int
    micro_batch: int
    processes: int
    accumulation: int
    total_steps: int


def plan_batches(n_examples: int, spec: Any, micro_batch: int, processes: int) -> BatchPlan:
    if spec.batch_size >= processes:  # a micro-batch larger than a rank's share only means no accumulation
        micro_batch = max(1, min(micro_batch, spec.batch_size // processes))
    per_step = micro_batch * processes
    if spec.batch_size % per_step:
        raise SelfaugError(
            "train.batch_size must be a multiple of micro_batch_size x num_processes",
            field="train.batch_size",
            expected=f"a multiple of {micro_batch} x {processes} = {per_step}",
            found=str(spec.batch_size),
            hint="change train.batch_size or execution.micro_batch_size / num_processes",
        )
    if n_examples == 0:
        raise SelfaugError("no training examples left after formatting", field="training rows",
                           hint="check the dataset and train.max_length")
    total = max(1, math.ceil(spec.epochs * n_examples / spec.batch_size))
    return BatchPlan(spec.batch_size, micro_batch, processes, spec.batch_size // per_step, total)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def global_batch(step: int, n: int, batch: int, seed: int) -> list[int]:
    """Example indices of optimizer step ``step`` (0-based)."""
    start = step * batch
    out: list[int] = []
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n)
        order = epoch_order(n, seed, epoch)
        out.extend(order[offset: offset + batch - len(out)])
    return out


def rank_micro_batches(indices: list[int], lengths: list[int], plan: BatchPlan, rank: int) -> list[list[int]]:
    """This rank's ``accumulation`` micro-batches of a global batch."""
    ordered = sorted(indices, key=lambda i: (-lengths[i], i))
    chunks = [ordered[j: j + plan.micro_batch] for j in range(0, len(ordered), plan.micro_batch)]
    return [chunk for j, chunk in enumerate(chunks) if j % plan.processes == rank]


def collate(examples: list[Example], pad_id: int, packed: bool) -> tuple[dict[str, Any], int]:
    """Right-padded tensors and the count of real tokens. Packed blocks get position_ids and no attention mask (block-diagonal)."""
    import torch

    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    positions = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
        if packed and e.position_ids is not None:
            positions[row, :n] = torch.tensor(e.position_ids)
            positions[row, n:] = torch.arange(width - n)  # padding forms its own (unlabelled) segment
    batch: dict[str, Any] = {"input_ids": ids, "labels": labels}
    if packed:
        batch["position_ids"] = positions
    else:
        batch["attention_mask"] = mask
    return batch, int(mask.sum())

"""Continuous batching for the generation engine: ``batch_size`` slots decode together, and a slot
whose row finished takes the next prompt at once.

New prompts are prefilled together (left-padded, their own ``DynamicCache``), then their cache
rows are joined to the running cache: both are left-padded to the same length, the padding
masked out by the attention mask. Cache columns no running row attends to any more (the left
padding of rows that left) are cut after each removal, so the cache stays as long as the longest
running row. Each row keeps its own positions and its own ``torch.Generator``, so what a row
samples depends only on its prompt and seed, not on the rows it shares the batch with.

Models whose cache is not plain ``DynamicLayer``s (sliding-window or quantized layers) are not
joined: new prompts then start only when the batch is empty (batch by batch, as before).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

OnRow = Callable[[int, list[int], str], None]


def _mergeable(cache: Any) -> bool:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers)


def _pad_left(t: Any, width: int, dim: int) -> Any:
    import torch.nn.functional as F

    extra = width - t.shape[dim]
    if extra <= 0:
        return t
    pad = [0, 0] * (t.dim() - 1 - (dim % t.dim())) + [extra, 0]
    return F.pad(t, pad)


class _Batch:
    """The running rows: their cache, attention mask, last positions and last tokens."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.cache: Any = None
        self.mask: Any = None
        self.positions: Any = None

    def join(self, rows: list[int], cache: Any, mask: Any, positions: Any) -> None:
        import torch

        if not self.rows:
            self.rows, self.cache, self.mask, self.positions = list(rows), cache, mask, positions
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for old, new in zip(self.cache.layers, cache.layers):
            old.keys = torch.cat([_pad_left(old.keys, width, -2), _pad_left(new.keys, width, -2)], dim=0)
            old.values = torch.cat([_pad_left(old.values, width, -2), _pad_left(new.values, width, -2)], dim=0)
        self.mask = torch.cat([_pad_left(self.mask, width, 1), _pad_left(mask, width, 1)], dim=0)
        self.positions = torch.cat([self.positions, positions], dim=0)
        self.rows += rows

    def keep(self, slots: list[int]) -> None:
        """Keep only ``slots``; cut cache columns that no kept row attends to."""
        import torch

        self.rows = [self.rows[s] for s in slots]
        if not slots:
            self.cache = self.mask = self.positions = None
            return
        index = torch.tensor(slots, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.positions = self.mask[index], self.positions[index]
        first = int(self.mask.any(dim=0).int().argmax())
        if first > 0 and _mergeable(self.cache):
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
            self.mask = self.mask[:, first:]


def decode_stream(loaded: Any, encoded: list[list[int]], order: list[int], params: Any, seeds: list[int],
                  stops: set[int], batch_size: int, on_row: OnRow,
                  on_step: Callable[[int], None] | None = None,
                  stop_hit: Callable[[list[int]], bool] | None = None) -> None:
    """Decode the prompts ``encoded[i]`` for ``i`` in ``order`` with ``batch_size`` slots; calls
    ``on_row(i, new_token_ids, finish_reason)`` as each row finishes and ``on_step(tokens)`` after
    every decode step (the tokens it produced), so a caller can show progress inside a batch.
    A row finishes on a token in ``stops`` (not kept), when ``stop_hit(its tokens)`` says its text
    reached a stop string (``stop``), or at ``params.max_new_tokens`` (``length``)."""
    import torch
    from transformers import DynamicCache

    from selfaug_compiler.generate.engine import _left_pad, pick_tokens, row_generators

    model, device = loaded.model, loaded.device
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    if params.max_new_tokens <= 0:
        for i in order:
            on_row(i, [], "length")
        return
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    refill_at = max(1, batch_size // 8)  # free slots that make a refill worth its prefill
    queue = list(reversed(order))
    gens: dict[int, Any] = {}
    out: dict[int, list[int]] = {}
    batch = _Batch()
    step_tokens: Any = None
    with torch.inference_mode():
        while queue or batch.rows:
            logits = None
            if batch.rows:
                batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch.rows), 1))], dim=-1)
                batch.positions = batch.positions + 1
                logits = model(input_ids=step_tokens, attention_mask=batch.mask, position_ids=batch.positions,
                               past_key_values=batch.cache, use_cache=True, **last_only).logits[:, -1, :]
            free = batch_size - len(batch.rows)
            if queue and free and (not batch.rows or (free >= min(refill_at, len(queue)) and _mergeable(batch.cache))):
                new = [queue.pop() for _ in range(min(free, len(queue)))]
                input_ids, mask = _left_pad([encoded[i] for i in new], pad_id, device)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                cache = DynamicCache()
                new_logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                   past_key_values=cache, use_cache=True, **last_only).logits[:, -1, :]
                for i, g in zip(new, row_generators([seeds[i] for i in new], device)):
                    gens[i], out[i] = g, []
                batch.join(new, cache, mask, positions[:, -1:])
                logits = new_logits if logits is None else torch.cat([logits, new_logits], dim=0)
            tokens = pick_tokens(logits, params, [gens[r] for r in batch.rows]).tolist()
            if on_step is not None:
                on_step(len(tokens))
            keep = []
            for slot, (row, tok) in enumerate(zip(batch.rows, tokens)):
                if tok in stops:
                    on_row(row, out.pop(row), "stop")
                else:
                    out[row].append(tok)
                    if stop_hit is not None and stop_hit(out[row]):
                        on_row(row, out.pop(row), "stop")
                    elif len(out[row]) >= params.max_new_tokens:
                        on_row(row, out.pop(row), "length")
                    else:
                        keep.append(slot)
                        continue
                gens.pop(row)
            if len(keep) < len(batch.rows):
                batch.keep(keep)
            step_tokens = torch.tensor([tokens[s] for s in keep], dtype=torch.long, device=device).unsqueeze(-1)

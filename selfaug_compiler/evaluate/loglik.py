"""Log-likelihood scoring with lm-evaluation-harness semantics, computed faster.

Tokenization is lm_eval's ``HFLM`` with its defaults: trailing whitespace of the context moves
to the continuation, ``whole = encode(context + continuation)``, ``ctx = encode(context)``,
``cont = whole[len(ctx):]``; ``encode`` uses the tokenizer's own special-token default
(``add_bos_token=None`` in HFLM), except that a string already starting with the prefix
token's text gets no special tokens; an empty context becomes the prefix token (BOS, else EOS).
The model input is ``ctx + cont`` (left-truncated to ``max_length + 1``), and a request's
result is (sum of the continuation tokens' log-probs, whether every one is the argmax).

The speed comes from computing each distinct context once. Requests are grouped by their
context tokens; by default (``loglik_packed``) each group becomes one segment holding the context
followed by every continuation (minus its last token), with a custom attention mask (each
continuation sees the context and itself, never the other continuations) and the position ids
it would have had alone; segments are packed several to a row, and only the positions that
predict a continuation token go through the LM head. A batch is one forward pass over about
``len(ctx) + sum(len(cont) - 1)`` tokens per group instead of lm_eval's ``sum(len(ctx) +
len(cont))``, with full-vocabulary logits only for the ``sum(len(cont))`` scored tokens.
Attention kernels that ignore custom masks (flash attention) use the other path: contexts once
with a KV cache (``DynamicCache``), then the continuations.
In fp32 the sums agree with lm_eval's to ~1e-4 (tests/test_evaluate_loglik.py compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from selfaug_compiler.evaluate.items import MCItem
from selfaug_compiler.evaluate.loglik_packed import (packed_batches, score_batch_packed, supports_packing,
                                                      token_scores)

DEFAULT_MAX_LENGTH = 2048  # lm_eval's default when neither config nor tokenizer says


@dataclass
class _Group:
    context: list[int]
    members: list[tuple[int, list[int]]]  # (request index, continuation tokens)


class PairEncoder:
    """lm_eval's ``tok_encode``/``_encode_pair`` for one tokenizer, with a context cache."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        bos = tokenizer.bos_token_id
        self.prefix_token_id = bos if bos is not None else tokenizer.eos_token_id
        self.prefix_text = tokenizer.decode(self.prefix_token_id)
        self._cache: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        kwargs = {"add_special_tokens": False} if self.prefix_text and text.startswith(self.prefix_text) else {}
        return self.tokenizer.encode(text, **kwargs)

    def _encode_cached(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.encode(text)
        return self._cache[text]

    def pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if context == "":
            cont = self.tokenizer.encode(continuation, add_special_tokens=False)
            if self.prefix_token_id != cont[0]:
                return [self.prefix_token_id], cont
            return cont[:1], cont[1:]
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode(context + continuation)
        ctx = self._encode_cached(context)
        return ctx, whole[len(ctx):]


def model_max_length(model: Any, tokenizer: Any) -> int:
    """lm_eval's ``resolve_max_length``: text_config, config, tokenizer, then 2048."""
    config = getattr(model, "config", None)
    for cfg in (getattr(config, "text_config", None), config):
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(cfg, attr, None) if cfg is not None else None
            if isinstance(value, int) and value > 0:
                return value
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 10**12:
        return tok_max
    return DEFAULT_MAX_LENGTH


def _truncate(ctx: list[int], cont: list[int], max_length: int) -> list[int]:
    """The context lm_eval effectively sees: ``(ctx + cont)[-(max_length + 1):]`` minus the continuation."""
    if len(ctx) + len(cont) <= max_length + 1:
        return ctx
    return (ctx + cont)[-(max_length + 1):][: -len(cont)]


def group_requests(encoded: list[tuple[list[int], list[int]]], max_length: int) -> list[_Group]:
    """Requests that share their (truncated) context tokens, longest context first."""
    groups: dict[tuple[int, ...], _Group] = {}
    for index, (ctx, cont) in enumerate(encoded):
        ctx = _truncate(ctx, cont, max_length)
        key = tuple(ctx)
        if key not in groups:
            groups[key] = _Group(list(ctx), [])
        groups[key].members.append((index, cont))
    return sorted(groups.values(), key=lambda g: (-len(g.context), -max(len(c) for _, c in g.members)))


def _batches(groups: list[_Group], batch_size: int) -> list[list[_Group]]:
    """Consecutive groups until the batch holds ``batch_size`` continuations."""
    out: list[list[_Group]] = []
    current: list[_Group] = []
    rows = 0
    for group in groups:
        current.append(group)
        rows += len(group.members)
        if rows >= batch_size:
            out.append(current)
            current, rows = [], 0
    if current:
        out.append(current)
    return out


def _context_pass(model: Any, device: Any, batch: list[_Group], pad_id: int) -> tuple[Any, Any, Any]:
    """Left-padded contexts through the model: (KV cache, attention mask, last-position logits)."""
    import torch

    width = max(len(g.context) for g in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, g in enumerate(batch):
        ids[i, width - len(g.context):] = torch.tensor(g.context)
        mask[i, width - len(g.context):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {"input_ids": ids.to(device), "attention_mask": mask.to(device),
              "position_ids": positions.to(device), "use_cache": True}
    try:  # only the last position's logits are needed (saves the LM head over the context)
        out = model(**kwargs, logits_to_keep=1)
    except TypeError:
        out = model(**kwargs)
    return out.past_key_values, kwargs["attention_mask"], out.logits[:, -1, :]


def length_buckets(lengths: list[int], waste: float = 1.25) -> list[list[int]]:
    """Indices sorted by length (longest first), cut so padding stays under ``waste`` × real tokens."""
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: -lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if buckets and lengths[buckets[-1][0]] * (len(buckets[-1]) + 1) <= waste * (
                sum(lengths[j] for j in buckets[-1]) + lengths[i]):
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


def _continuation_pass(model: Any, device: Any, cache: Any, ctx_mask: Any, ctx_len: list[int],
                       rows: list[tuple[int, list[int]]], pad_id: int) -> tuple[Any, Any]:
    """Sum of log-probs and all-greedy of continuation tokens 2..n, rows bucketed by length."""
    import copy

    import torch

    sums = torch.zeros(len(rows), dtype=torch.float32)
    greedy = torch.ones(len(rows), dtype=torch.bool)
    buckets = length_buckets([len(cont) - 1 for _, cont in rows])
    for b, bucket in enumerate(buckets):
        width = len(rows[bucket[0]][1]) - 1
        inp = torch.full((len(bucket), width), pad_id, dtype=torch.long)
        tgt = torch.full((len(bucket), width), pad_id, dtype=torch.long)
        valid = torch.zeros((len(bucket), width), dtype=torch.bool)
        for r, i in enumerate(bucket):
            cont = rows[i][1]
            inp[r, :len(cont) - 1] = torch.tensor(cont[:-1])
            tgt[r, :len(cont) - 1] = torch.tensor(cont[1:])
            valid[r, :len(cont) - 1] = True
        groups = torch.tensor([rows[i][0] for i in bucket], device=device)
        sub_cache = cache if b == len(buckets) - 1 else copy.deepcopy(cache)
        sub_cache.batch_select_indices(groups)
        start = torch.tensor([ctx_len[rows[i][0]] for i in bucket]).unsqueeze(-1)
        positions = (start + torch.arange(width).unsqueeze(0)).to(device)
        mask = torch.cat([ctx_mask[groups], torch.ones((len(bucket), width), dtype=torch.long, device=device)], -1)
        logits = model(input_ids=inp.to(device), attention_mask=mask, position_ids=positions,
                       past_key_values=sub_cache, use_cache=False).logits
        logp, hit = token_scores(logits, tgt.to(device))
        valid = valid.to(device)
        index = torch.tensor(bucket)
        sums[index] = (logp * valid).sum(-1).float().cpu()
        greedy[index] = (hit | ~valid).all(-1).cpu()
    return sums, greedy


def _score_batch_cached(model: Any, device: Any, batch: list[_Group], pad_id: int) -> list[tuple[int, float, bool]]:
    """Contexts once with a KV cache, then the continuations (any attention implementation)."""
    import torch

    cache, ctx_mask, last = _context_pass(model, device, batch, pad_id)
    rows = [(gi, cont) for gi, g in enumerate(batch) for _, cont in g.members]
    indices = [index for g in batch for index, _ in g.members]
    row_group = torch.tensor([gi for gi, _ in rows], device=device)
    first = torch.tensor([cont[0] for _, cont in rows], device=device)
    first_logp, first_greedy = token_scores(last[row_group], first)
    sums, greedy = first_logp.float().cpu(), first_greedy.cpu()
    if any(len(cont) > 1 for _, cont in rows):
        rest_sums, rest_greedy = _continuation_pass(model, device, cache, ctx_mask,
                                                    [len(g.context) for g in batch], rows, pad_id)
        sums, greedy = sums + rest_sums, greedy & rest_greedy
    return [(index, float(sums[r]), bool(greedy[r])) for r, index in enumerate(indices)]


def loglikelihood(loaded: Any, requests: list[tuple[str, str]], *, batch_size: int = 32,
                  on_batch: Callable[[list[int]], None] | None = None,
                  packed: bool = True) -> list[tuple[float, bool]]:
    """(sum of continuation log-probs, is greedy) for each (context, continuation), in order.

    ``packed``: one forward per batch with a context and all its continuations in one row
    (custom attention mask); otherwise contexts run once with a KV cache, then continuations.
    ``on_batch(indices)`` gets the request indices scored by each batch (batches follow length
    order, not request order).
    """
    import torch

    encoder = PairEncoder(loaded.tokenizer)
    encoded = [encoder.pair(ctx, cont) for ctx, cont in requests]
    groups = group_requests(encoded, model_max_length(loaded.model, loaded.tokenizer))
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    results: list[tuple[float, bool] | None] = [None] * len(requests)
    if packed and supports_packing(loaded.model):
        plan = packed_batches(groups, max(1, batch_size))
        score_batch: Callable[..., list[tuple[int, float, bool]]] = score_batch_packed
    else:
        plan = [(batch, None) for batch in _batches(groups, max(1, batch_size))]
        score_batch = _score_batch_cached
    with torch.inference_mode():
        for batch, rows in plan:
            scored = score_batch(loaded.model, loaded.device, batch, pad_id, *([rows] if rows else []))
            for index, logp, greedy in scored:
                results[index] = (logp, greedy)
            if on_batch is not None:
                on_batch([index for index, _, _ in scored])
    return [r for r in results if r is not None]


def argmax_first(values: Any) -> int:
    """``np.argmax`` (the first index of the maximum), as lm_eval takes it."""
    import numpy as np

    return int(np.argmax(np.asarray(values, dtype=np.float64)))


def mc_item_result(item: MCItem, lls: list[float], greedy: list[bool]) -> dict[str, Any]:
    """lm_eval's multiple_choice ``process_results``: acc and (where defined) acc_norm."""
    pred = argmax_first(lls)
    result: dict[str, Any] = {"id": item.id, "gold": item.gold, "pred": pred, "acc": float(pred == item.gold),
                              "lls": lls, "greedy": greedy}
    if item.norm_lengths is not None:
        import numpy as np

        with np.errstate(divide="ignore", invalid="ignore"):
            pred_norm = argmax_first(np.asarray(lls) / np.asarray(item.norm_lengths, dtype=np.float64))
        result["pred_norm"] = pred_norm
        result["acc_norm"] = float(pred_norm == item.gold)
    return result


class ItemCounter:
    """Items complete once every one of their requests (one per answer choice) is scored.

    ``owners[i]`` is the item of request ``i``; ``progress(done, total)`` counts items, never
    choices (40 four-way items are 40, not 160).
    """

    def __init__(self, owners: list[int], progress: Callable[[int, int], None] | None) -> None:
        self.left: dict[int, int] = {}
        for item in owners:
            self.left[item] = self.left.get(item, 0) + 1
        self.owners, self.progress, self.total, self.done = owners, progress, len(self.left), 0

    def start(self) -> None:
        if self.progress is not None:
            self.progress(0, self.total)

    def __call__(self, indices: list[int]) -> None:
        for index in indices:
            item = self.owners[index]
            self.left[item] -= 1
            self.done += self.left[item] == 0
        if self.progress is not None:
            self.progress(self.done, self.total)


def score_multiple_choice(loaded: Any, items: list[MCItem], *, batch_size: int = 32,
                          progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Per-item results (acc, acc_norm, per-choice log-likelihoods) for multiple-choice items.

    ``progress(done, total)`` counts items (see ``ItemCounter``)."""
    flat = [req for item in items for req in item.requests]
    counter = ItemCounter([n for n, item in enumerate(items) for _ in item.requests], progress)
    counter.start()
    scores = loglikelihood(loaded, flat, batch_size=batch_size, on_batch=counter)
    out, pos = [], 0
    for item in items:
        chunk = scores[pos:pos + item.n_choices]
        pos += item.n_choices
        out.append(mc_item_result(item, [s[0] for s in chunk], [s[1] for s in chunk]))
    return out

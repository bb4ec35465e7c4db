"""Log-likelihood scoring with lm-evaluation-harness semantics, computed faster.

Tokenization is lm_eval's ``HFLM`` with its defaults: trailing whitespace of the context moves
to the continuation, ``whole = encode(context + continuation)``, ``ctx = encode(context)``,
``cont = whole[len(ctx):]``; ``encode`` uses the tokenizer's own special-token default
(``add_bos_token=None`` in HFLM), except that a string already starting with the prefix
token's text gets no special tokens; an empty context becomes the prefix token (BOS, else EOS).
The model input is ``ctx + cont`` (left-truncated to ``max_length + 1``), and a request's
result is (sum of the continuation tokens' log-probs, whether every one is the argmax).

The speed comes from computing each distinct context once: requests are grouped by their
context tokens, a batch of contexts runs left-padded with a KV cache, the cache rows are
repeated for each continuation of the group, and only the continuation tokens run again.
A single-token continuation (MMLU's `` A``) needs no second pass at all. In fp32 the sums
agree with lm_eval's to ~1e-5 (tests/test_evaluate_loglik.py compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from selfaug_compiler.evaluate.items import MCItem

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


def _token_scores(logits: Any, targets: Any) -> tuple[Any, Any]:
    """log p(target) and (argmax == target) for logits [..., V] and targets [...]."""
    import torch

    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    logp = picked - torch.logsumexp(logits, dim=-1)
    return logp, logits.argmax(dim=-1) == targets


def _score_batch(model: Any, device: Any, batch: list[_Group], pad_id: int) -> list[tuple[int, float, bool]]:
    import torch

    ctx_len = [len(g.context) for g in batch]
    width = max(ctx_len)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, g in enumerate(batch):
        ids[i, width - len(g.context):] = torch.tensor(g.context)
        mask[i, width - len(g.context):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    last = out.logits[:, -1, :]  # predicts each group's first continuation token

    rows = [(gi, index, cont) for gi, g in enumerate(batch) for index, cont in g.members]
    row_group = torch.tensor([gi for gi, _, _ in rows], device=device)
    first = torch.tensor([cont[0] for _, _, cont in rows], device=device)
    first_logp, first_greedy = _token_scores(last[row_group], first)
    rest_len = max(len(cont) for _, _, cont in rows) - 1
    if rest_len == 0:
        return [(index, float(first_logp[r]), bool(first_greedy[r])) for r, (_, index, _) in enumerate(rows)]

    cache = out.past_key_values
    cache.batch_select_indices(row_group)
    inp = torch.full((len(rows), rest_len), pad_id, dtype=torch.long)
    tgt = torch.full((len(rows), rest_len), pad_id, dtype=torch.long)
    valid = torch.zeros((len(rows), rest_len), dtype=torch.bool)
    for r, (_, _, cont) in enumerate(rows):
        n = len(cont) - 1
        if n:
            inp[r, :n] = torch.tensor(cont[:-1])
            tgt[r, :n] = torch.tensor(cont[1:])
            valid[r, :n] = True
    start = torch.tensor([ctx_len[gi] for gi, _, _ in rows]).unsqueeze(-1)
    cont_pos = (start + torch.arange(rest_len).unsqueeze(0)).to(device)
    cont_mask = torch.cat([mask[row_group], torch.ones((len(rows), rest_len), dtype=torch.long, device=device)], -1)
    logits = model(input_ids=inp.to(device), attention_mask=cont_mask, position_ids=cont_pos,
                   past_key_values=cache, use_cache=False).logits
    logp, greedy = _token_scores(logits, tgt.to(device))
    valid = valid.to(device)
    sums = first_logp + (logp * valid).sum(-1)
    all_greedy = first_greedy & (greedy | ~valid).all(-1)
    return [(index, float(sums[r]), bool(all_greedy[r])) for r, (_, index, _) in enumerate(rows)]


def loglikelihood(loaded: Any, requests: list[tuple[str, str]], *, batch_size: int = 32,
                  progress: Callable[[int, int], None] | None = None) -> list[tuple[float, bool]]:
    """(sum of continuation log-probs, is greedy) for each (context, continuation), in order."""
    import torch

    encoder = PairEncoder(loaded.tokenizer)
    encoded = [encoder.pair(ctx, cont) for ctx, cont in requests]
    groups = group_requests(encoded, model_max_length(loaded.model, loaded.tokenizer))
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    results: list[tuple[float, bool] | None] = [None] * len(requests)
    done = 0
    with torch.inference_mode():
        for batch in _batches(groups, max(1, batch_size)):
            for index, logp, greedy in _score_batch(loaded.model, loaded.device, batch, pad_id):
                results[index] = (logp, greedy)
            done += sum(len(g.members) for g in batch)
            if progress is not None:
                progress(done, len(requests))
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


def score_multiple_choice(loaded: Any, items: list[MCItem], *, batch_size: int = 32,
                          progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Per-item results (acc, acc_norm, per-choice log-likelihoods) for multiple-choice items."""
    flat = [req for item in items for req in item.requests]
    scores = loglikelihood(loaded, flat, batch_size=batch_size, progress=progress)
    out, pos = [], 0
    for item in items:
        chunk = scores[pos:pos + item.n_choices]
        pos += item.n_choices
        out.append(mc_item_result(item, [s[0] for s in chunk], [s[1] for s in chunk]))
    return out

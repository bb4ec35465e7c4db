"""The packed path of the log-likelihood scorer (``loglik.loglikelihood``'s default).

A request group (one context, the continuations that share it) becomes one segment: the
context followed by every continuation minus its last token, with the position ids each token
would have alone. Several segments share a row (first-fit, the row as wide as the batch's
longest segment), so a batch has almost no padding. A custom attention mask lets a token see
only the context of its own segment and its own continuation (causally). Only the positions
that predict a continuation token go through the LM head: a pre-hook on the model's output
embeddings keeps just those hidden states, so any scaling or soft-capping the model applies to
its logits afterwards still applies.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

PAD, CONTEXT = -2, -1  # segment codes besides continuation j >= 0


def token_scores(logits: Any, targets: Any) -> tuple[Any, Any]:
    """log p(target) and (argmax == target) for logits [..., V] and targets [...]."""
    import torch

    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    logp = picked - torch.logsumexp(logits, dim=-1)
    return logp, logits.argmax(dim=-1) == targets


def pack_group(group: Any) -> tuple[list[int], list[int], list[int], list[list[int]]]:
    """One segment holding a context and all its continuations (each without its last token).

    Returns (tokens, position ids, code of each token: -1 = context, j = continuation j, and
    for each continuation the segment positions whose logits predict its tokens).
    """
    ctx = group.context
    tokens, positions, segment = list(ctx), list(range(len(ctx))), [CONTEXT] * len(ctx)
    predictors = []
    for j, (_, cont) in enumerate(group.members):
        start = len(tokens)
        tokens += cont[:-1]
        positions += list(range(len(ctx), len(ctx) + len(cont) - 1))
        segment += [j] * (len(cont) - 1)
        predictors.append([len(ctx) - 1] + list(range(start, start + len(cont) - 1)))
    return tokens, positions, segment, predictors


def pack_rows(lengths: list[int]) -> list[list[int]]:
    """First-fit decreasing: segment indices per row, rows as wide as the longest segment."""
    width = max(lengths)
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(width - lengths[i])
    return rows


def packed_mask(owners: Any, codes: Any, dtype: Any) -> Any:
    """[B, 1, W, W] additive mask (0 = may attend) from each token's segment (-1 = padding) and
    code: causal, inside one segment, a continuation sees the context and itself; padding sees
    only itself."""
    import torch

    width = owners.shape[1]
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    gq, gk = owners.unsqueeze(2), owners.unsqueeze(1)
    cq, ck = codes.unsqueeze(2), codes.unsqueeze(1)
    allowed = (gq == gk) & (gq >= 0) & ((ck == CONTEXT) | (ck == cq)) & causal
    allowed |= torch.eye(width, dtype=torch.bool)
    zero = torch.zeros((), dtype=dtype)
    return torch.where(allowed, zero, torch.finfo(dtype).min).unsqueeze(1)


@contextmanager
def only_positions(model: Any, rows: Any, cols: Any) -> Iterator[list[bool]]:
    """While active, the LM head sees only hidden states [rows, cols] (as one row of N). Yields a
    one-element list that is [True] once the hook has done so (a model without an output-embedding
    module, or one that passes the hidden states by keyword, gets all logits instead)."""
    applied = [False]
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None or not hasattr(head, "register_forward_pre_hook"):
        yield applied
        return

    def pick(_module: Any, args: tuple) -> tuple | None:
        if not args or getattr(args[0], "dim", lambda: 0)() != 3:
            return None
        applied[0] = True
        return (args[0][rows, cols].unsqueeze(0),) + tuple(args[1:])

    handle = head.register_forward_pre_hook(pick)
    try:
        yield applied
    finally:
        handle.remove()


def score_batch_packed(model: Any, device: Any, batch: list[Any], pad_id: int) -> list[tuple[int, float, bool]]:
    """One forward for the batch: segments packed into rows, logits only where they are needed."""
    import torch

    packed = [pack_group(g) for g in batch]
    rows = pack_rows([len(p[0]) for p in packed])
    width = max(len(p[0]) for p in packed)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    owners = torch.full((len(rows), width), -1, dtype=torch.long)
    codes = torch.full((len(rows), width), PAD, dtype=torch.long)
    at_row, at_col, targets, owner = [], [], [], []
    for r, members in enumerate(rows):
        offset = 0
        for g in members:
            tokens, positions, segment, predictors = packed[g]
            end = offset + len(tokens)
            ids[r, offset:end] = torch.tensor(tokens)
            pos[r, offset:end] = torch.tensor(positions)
            owners[r, offset:end] = g
            codes[r, offset:end] = torch.tensor(segment)
            for (index, cont), where in zip(batch[g].members, predictors):
                at_row += [r] * len(cont)
                at_col += [offset + w for w in where]
                targets += cont
                owner += [index] * len(cont)
            offset = end
    mask = packed_mask(owners, codes, model.dtype).to(device)
    at_row_t, at_col_t = torch.tensor(at_row, device=device), torch.tensor(at_col, device=device)
    kwargs = {"input_ids": ids.to(device), "position_ids": pos.to(device), "attention_mask": mask,
              "use_cache": False}
    with only_positions(model, at_row_t, at_col_t) as applied:
        logits = model(**kwargs, logits_to_keep=0).logits
    logits = logits[0] if applied[0] else logits[at_row_t, at_col_t]
    logp, hit = token_scores(logits, torch.tensor(targets, device=device))
    sums: dict[int, float] = {}
    greedy: dict[int, bool] = {}
    for index, lp, h in zip(owner, logp.float().cpu().tolist(), hit.cpu().tolist()):
        sums[index] = sums.get(index, 0.0) + lp
        greedy[index] = greedy.get(index, True) and bool(h)
    return [(index, sums[index], greedy[index]) for g in batch for index, _ in g.members]


def supports_packing(model: Any) -> bool:
    """Custom 4D masks work with the sdpa and eager attention of transformers, not flash kernels."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return impl in ("sdpa", "eager")

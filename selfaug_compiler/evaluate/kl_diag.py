"""KL-to-base diagnostic (issue 15.3; Shenfeld et al., "RL's Razor", arXiv 2509.04259): the mean
per-token forward KL(pi_base || pi_ft) on the new task's held-out prompts, measured on answers
*sampled from the base model* (temperature 1), summed over the full vocabulary at every answer
token and averaged over all answer tokens (token-weighted). Forgetting tracks it, and it needs no
retention benchmark. The sampled answers are decoded to text and tokenized again (the generation
engine returns text), with the end-of-turn token appended to answers that stopped on it.
"""

from __future__ import annotations

from typing import Any, Callable


def _batches(pairs: list[tuple[list[int], list[int]]], batch_size: int, pad: int):
    import torch

    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        width = max(len(p) + len(r) for p, r in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        answer = torch.zeros_like(ids, dtype=torch.bool)  # positions whose *next* token is an answer token
        for i, (p, r) in enumerate(chunk):
            seq = p + r
            ids[i, :len(seq)] = torch.tensor(seq)
            mask[i, :len(seq)] = 1
            answer[i, len(p) - 1:len(seq) - 1] = True
        yield ids, mask, answer


def token_kl(base: Any, tuned: Any, pairs: list[tuple[list[int], list[int]]], *, pad_id: int = 0,
             batch_size: int = 8, device: str = "cpu",
             progress: Callable[..., None] | None = None) -> tuple[float, int]:
    """Sum over answer tokens of KL(p_base || p_tuned) of the next-token distributions, and the
    number of answer tokens. ``pairs``: (prompt ids, answer ids); ``base``/``tuned``: causal LMs."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for done, (ids, mask, answer) in enumerate(_batches(pairs, batch_size, pad_id)):
            ids, mask, answer = ids.to(device), mask.to(device), answer.to(device)
            lp_base = torch.log_softmax(base(input_ids=ids, attention_mask=mask).logits.float(), -1)
            lp_tuned = torch.log_softmax(tuned(input_ids=ids, attention_mask=mask).logits.float(), -1)
            kl = (lp_base.exp() * (lp_base - lp_tuned)).sum(-1)  # [batch, positions]
            total += float(kl[answer].sum())
            count += int(answer.sum())
            if progress is not None:
                progress(min((done + 1) * batch_size, len(pairs)), len(pairs), "kl", unit="prompts")
    return total, count


def kl_to_base(base: Any, tuned: Any, prompts: list[str], *, max_new_tokens: int, seed: int, batch_size: int = 8,
               progress: Callable[..., None] | None = None, sampler: Any = None) -> dict[str, Any]:
    """``base``/``tuned``: ``LoadedModel``s. Samples one answer per prompt from the base model
    (temperature 1, per-prompt seeds) on ``sampler`` (a ``generate/backends`` backend serving the
    base model; default: the engine on ``base``), then measures the mean per-token KL on those answers."""
    from selfaug_compiler.generate.backends.steps import backend_of
    from selfaug_compiler.generate.engine import SamplingParams, encode_prompt

    tok = base.tokenizer
    sampler = sampler if sampler is not None else backend_of(base)
    answers = sampler.generate(prompts, SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens),
                               seeds=[seed + i for i in range(len(prompts))], batch_size=batch_size,
                               progress=(lambda d, t, **kw: progress(d, t, "base answers", unit="prompts"))
                               if progress is not None else False)
    end = [tok.eos_token_id] if tok.eos_token_id is not None else []
    pairs = []
    for prompt, answer in zip(prompts, answers):
        ids = tok(answer.text, add_special_tokens=False)["input_ids"]
        pairs.append((encode_prompt(tok, prompt), ids + (end if answer.finish_reason == "stop" else [])))
    pairs = [p for p in pairs if p[1]]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    total, count = token_kl(base.model, tuned.model, pairs, pad_id=pad, batch_size=batch_size, device=base.device,
                            progress=progress)
    return {"kl_to_base": total / count if count else None, "tokens": count, "prompts": len(pairs),
            "max_new_tokens": max_new_tokens, "sampling": "base model, temperature 1",
            "backend": sampler.provenance()}

"""Per-token training losses (``train.loss``, ``recipe/schema_loss.py``), summed over target tokens.

The loop divides the sum by the global batch's target-token count, as for plain cross-entropy,
so micro-batch size, process count and packing leave every loss unchanged. Position ``t`` of the
logits predicts ``labels[t + 1]`` (the shift of transformers' causal-LM loss); labels equal to
``IGNORE`` (prompt, padding, a packed segment's first token) add nothing.

- ``ce``:  ``-log p(y)``
- ``dft``: ``-p(y).detach() * log p(y)``, TRL's ``loss_type="dft"`` (``SFTTrainer.compute_loss``)
- ``kl``:  ``-log p(y) + beta * KL(p || p_base)``, the KL over the whole vocabulary of the
  next-token distributions at the same position; ``p_base`` from the frozen base model run
  alongside (no gradient). Why alongside and not precomputed: the full-vocabulary KL needs the
  base model's whole distribution per target token (vocab x 4 bytes: 196 KB per token for the
  49,152-token SmolLM2 vocabulary), which is far too big to keep as a column of the training set;
  keeping only the target token's base log-prob would give an estimate that is unbiased only for
  tokens sampled from the trained model, not for the dataset's targets. Under LoRA the base is
  the same module with the adapters switched off (no second copy in memory).
"""

from __future__ import annotations

from typing import Any, Callable

from selfaug_compiler.train.formatting import IGNORE


def shifted(logits: Any, labels: Any) -> tuple[Any, Any, Any]:
    """(log-probs of the predicting positions [N, V], target ids [N], mask [N]) over all positions."""
    logp = logits[:, :-1, :].float().log_softmax(-1)
    target = labels[:, 1:]
    mask = target != IGNORE
    return logp[mask], target[mask], mask


def token_loss_sum(logits: Any, labels: Any, kind: str, beta: float = 0.0, base_logits: Any = None) -> Any:
    """Sum over target tokens of the per-token loss of ``kind``."""
    logp, target, mask = shifted(logits, labels)
    logp_y = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    if kind == "ce":
        return -logp_y.sum()
    if kind == "dft":
        return -(logp_y.exp().detach() * logp_y).sum()
    if kind == "kl":
        loss = -logp_y.sum()
        if beta:
            base_logp = base_logits[:, :-1, :].float().log_softmax(-1)[mask]
            loss = loss + beta * (logp.exp() * (logp - base_logp)).sum()
        return loss
    raise ValueError(f"unknown loss kind {kind!r}")


def base_logits_fn(model: Any, spec: Any, load_base: Callable[[], Any]) -> Callable[[dict], Any] | None:
    """A function batch -> the frozen base model's logits, for ``kind: kl`` with beta > 0 (else None).
    LoRA: the trained module with its adapters disabled; full/freeze: a second, frozen copy."""
    import torch

    if spec.loss.kind != "kl" or not spec.loss.beta:
        return None
    if spec.method == "lora":
        def lora_base(batch: dict) -> Any:
            with torch.no_grad(), model.disable_adapter():
                return model(**batch, use_cache=False).logits
        return lora_base
    base = load_base()
    base.eval()
    for p in base.parameters():
        p.requires_grad_(False)

    def frozen_base(batch: dict) -> Any:
        with torch.no_grad():
            return base(**batch, use_cache=False).logits
    return frozen_base

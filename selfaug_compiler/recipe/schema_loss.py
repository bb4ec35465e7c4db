"""``train.loss``: the per-token training loss (issue 15.2), used by ``schema.py``'s ``TrainSpec``.

- ``ce``: cross-entropy on the response tokens (the default; what every recipe ran before).
- ``dft``: Dynamic Fine-Tuning (arXiv 2508.05629; TRL's ``loss_type="dft"``): each target token's
  cross-entropy weighted by its own probability, detached: ``-p.detach() * log p``.
- ``kl``: cross-entropy plus ``beta`` x KL(pi_theta || pi_base) per target token, the full-vocabulary
  KL of the trained model's next-token distribution from the frozen base model's, summed over
  the same response tokens as the cross-entropy (``train/losses.py``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LossKind = Literal["ce", "dft", "kl"]
LOSS_HELP = ("per-token training loss: ce (cross-entropy on response tokens), dft (cross-entropy weighted by "
             "the token's detached probability, TRL's DFT), kl (cross-entropy + beta x KL(model || frozen base) "
             "per response token)")


class LossSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True, allow_inf_nan=False)

    kind: LossKind = Field("ce", description=LOSS_HELP)
    beta: float = Field(0.0, ge=0.0, le=1_000.0, description="weight of the KL term (kind kl only)")

    @model_validator(mode="after")
    def _beta_only_for_kl(self) -> "LossSpec":
        if self.beta and self.kind != "kl":
            raise ValueError(f"train.loss.beta weights the KL term of kind kl; kind is {self.kind} "
                             "(set kind: kl or drop beta)")
        return self

"""``diagnose``: cheap diagnostics of a run (issue 15.3), used by ``schema.py``'s ``Recipe``.

``kl_to_base``: the mean per-token KL(pi_base || pi_ft) on the last task's held-out prompts, on
answers sampled from the base model (RL's Razor, arXiv 2509.04259): a step
``diagnose.kl_to_base`` (``evaluate/kl_step.py``) whose value the report carries as
``summary.kl_to_base``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DiagnoseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True, allow_inf_nan=False)

    kl_to_base: bool = Field(True, description="measure KL(base || fine-tuned) per token on held-out prompts")
    limit: int = Field(64, ge=1, le=100_000, description="held-out prompts used (a seeded subset, eval.seed)")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="length of the base model's sampled answers")

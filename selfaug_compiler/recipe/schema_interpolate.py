"""``interpolate``: weight interpolation between the base and the fine-tuned model (issue 15.1),
used by ``schema.py``'s ``Recipe``.

For every alpha, theta_alpha = (1 - alpha) * theta_base + alpha * theta_ft (a LoRA adapter scaled by
alpha) is built after the last train step and evaluated on every benchmark like the fine-tuned
model. ``select`` is the rule the report applies: among the alphas whose every retention
benchmark dropped by at most ``max_retention_drop_pts`` points, the one with the best in-domain
score (``compile/plan_interpolate.py``, ``report/interpolation.py``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

ALPHAS_HELP = ("interpolation weights alpha in (0, 1): theta = (1 - alpha) * base + alpha * fine-tuned; each "
               "is a model evaluated on every benchmark (alpha 1 is the fine-tuned model itself, already evaluated)")
SELECT_HELP = ("the report picks, among the alphas (and 1) whose every retention benchmark dropped at most "
               "max_retention_drop_pts points from the base model, the one with the best in-domain score")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True, allow_inf_nan=False)


class InterpolateSelect(_Strict):
    max_retention_drop_pts: float = Field(2.0, ge=0.0, le=100.0,
                                          description="largest retention drop (points) an alpha may have")


class InterpolateSpec(_Strict):
    alphas: list[float] = Field(..., min_length=1, max_length=32, description=ALPHAS_HELP)
    select: InterpolateSelect = Field(InterpolateSelect(), description=SELECT_HELP)

    @field_validator("alphas")
    @classmethod
    def _in_range(cls, alphas: list[float]) -> list[float]:
        bad = [a for a in alphas if not 0.0 <= a < 1.0]
        if bad:
            raise ValueError(f"interpolate.alphas must lie in [0, 1) (1 is the fine-tuned model); found {bad}")
        if len(set(alphas)) != len(alphas):
            raise ValueError("interpolate.alphas lists an alpha twice")
        return sorted(alphas)


def alpha_label(alpha: float) -> str:
    """``a0.25``: an alpha as part of a step name (``interpolate.a0.25``, ``eval.after.X.a0.25``)."""
    return f"a{alpha:g}"

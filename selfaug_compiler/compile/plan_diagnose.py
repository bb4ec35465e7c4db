"""Plan step ``diagnose.kl_to_base`` (issue 15.3; ``recipe/schema_diagnose.py``): after the last train
step, on the last task's held-out prompts. The report reads it as one more input."""

from __future__ import annotations

from typing import Any

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.plan import Step


def add_diagnose(builder: Any, ingest: str, train: str, heldout_rows: int) -> list[str]:
    """Adds the diagnose steps the recipe asks for; returns their names (report inputs)."""
    spec = builder.recipe.diagnose
    if spec is None or not spec.kl_to_base:
        return []
    if heldout_rows <= 0:
        raise SelfaugError("diagnose.kl_to_base measures KL on the task's held-out prompts, and the task holds none out",
                           field="diagnose.kl_to_base", expected="task.split.heldout >= 1",
                           hint="set task.split.heldout (e.g. 64) or drop diagnose")
    step = builder.add(Step("diagnose.kl_to_base", "diagnose", inputs=[ingest, train],
                            params={"model": builder.local_model, "limit": spec.limit, "seed": builder.recipe.eval.seed,
                                    "max_new_tokens": spec.max_new_tokens,
                                    **({"backend": builder.eval_backend} if builder.eval_backend else {})},
                            speed=dict(builder.eval_speed), outputs={"metrics": "kl_to_base"}))
    return [step.name]

"""The ``interpolate`` step: base model + a train step's artifact -> theta_alpha (issue 15.1).

Params (content): ``alpha`` (0..1), ``model`` (the base model section, as every step using it).
Input: the ``train`` step (``StepResult.model``). Output: a full model folder
``<work_dir>/model`` with its own fingerprint (``models/interpolate.py``); evaluate steps read it
like a trained artifact. A finished folder is returned as is when the step runs again.
"""

from __future__ import annotations

from pathlib import Path

from selfaug_compiler.errors import StepFailed
from selfaug_compiler.runtime import StepContext, StepResult

MODEL_DIR = "model"


def execute(ctx: StepContext) -> StepResult:
    from selfaug_compiler.models.fingerprint import folder_fingerprint
    from selfaug_compiler.models.interpolate import INTERPOLATE_META, save_interpolated
    from selfaug_compiler.train.step import recipe_model_ref

    alpha = float(ctx.step.params["alpha"])
    target = ctx.work_dir / MODEL_DIR
    if (target / INTERPOLATE_META).is_file():
        return StepResult(model=str(target), model_fingerprint=folder_fingerprint(target), metrics={"alpha": alpha})
    tuned = [r.model for r in ctx.inputs.values() if r.model]
    if len(tuned) != 1:
        raise StepFailed(ctx.step.name, "the interpolate step needs exactly one train step as input")
    base_ref, base_revision = recipe_model_ref(ctx)
    ctx.progress(0, 1, "interpolate", unit="models")
    fingerprint = save_interpolated(base_ref, Path(tuned[0]), alpha, target, base_revision=base_revision,
                                    base_dir=ctx.recipe_dir)
    ctx.progress(1, 1, "interpolate", unit="models")
    return StepResult(model=str(target), model_fingerprint=fingerprint, metrics={"alpha": alpha})

"""Plan steps of ``interpolate`` (issue 15.1): after the last train step, one ``interpolate.a<alpha>``
step per alpha (``train/interpolate_step.py``) and, for every evaluation of the final model, the
same evaluation of theta_alpha (``eval.after.<bench>.a<alpha>``). The report gets these evals with
``alpha`` set; they stay out of its before/after rows (``report/interpolation.py``).
"""

from __future__ import annotations

import copy
from typing import Any

from selfaug_compiler.plan import Step
from selfaug_compiler.recipe.schema_interpolate import alpha_label


def add_interpolation(builder: Any, train: str, evals: list[dict[str, Any]], final_stage: int) -> None:
    """Adds the interpolate steps and their evals to ``builder`` (a ``planner.PlanBuilder``) and
    their entries to ``evals`` (the report's list)."""
    spec = builder.recipe.interpolate
    if spec is None:
        return
    steps = {s.name: s for s in builder.steps}
    finals = [e for e in evals if e["stage"] == final_stage and e.get("role") is None]
    for alpha in spec.alphas:
        label = alpha_label(alpha)
        interp = builder.add(Step(f"interpolate.{label}", "interpolate", inputs=[train],
                                  params={"alpha": alpha, "model": builder.local_model},
                                  outputs={"model": f"{builder.recipe.name}-{label}"}))
        for entry in finals:
            source = steps[entry["step"]]
            name = f"{source.name}.{label}"
            builder.add(Step(name, "evaluate", params=copy.deepcopy(source.params),
                             inputs=[interp.name if i == train else i for i in source.inputs],
                             speed=dict(source.speed), outputs={"results": name}))
            evals.append({**entry, "step": name, "alpha": alpha})


def interpolate_report_param(builder: Any) -> dict[str, Any]:
    """The report step's ``interpolate`` param (the selection rule), empty without interpolation."""
    spec = builder.recipe.interpolate
    if spec is None:
        return {}
    return {"interpolate": {"alphas": list(spec.alphas),
                            "max_retention_drop_pts": spec.select.max_retention_drop_pts}}

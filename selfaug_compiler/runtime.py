"""What a step executor gets and returns. Kept free of heavy imports.

The runner builds a ``StepContext`` for each step; the executor for the step's kind returns a
``StepResult``. Results are recorded in the store under the step id, which is how later runs
find them (caching) and how downstream steps find their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from selfaug_compiler.plan import Plan, Step
from selfaug_compiler.progress import ProgressFn, no_progress

if TYPE_CHECKING:  # pragma: no cover
    from selfaug_compiler.store import Store


@dataclass
class StepResult:
    """What a step produced.

    datasets: logical output name -> version reference (``name@<content id>``).
    model:    path of a model artifact (adapter or full model folder), if any.
    metrics:  small JSON-able figures (acceptance rates, losses, accuracies).
    files:    other files written (reports, plots), by role.
    """

    datasets: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    model_fingerprint: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "datasets": self.datasets,
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            "metrics": self.metrics,
            "files": self.files,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StepResult":
        return cls(
            datasets=dict(data.get("datasets") or {}),
            model=data.get("model"),
            model_fingerprint=data.get("model_fingerprint"),
            metrics=dict(data.get("metrics") or {}),
            files=dict(data.get("files") or {}),
        )


@dataclass
class StepContext:
    plan: Plan
    step: Step
    store: "Store"
    work_dir: Path
    recipe_dir: Path
    inputs: dict[str, StepResult] = field(default_factory=dict)
    # Long loops report ``progress(done, total, phase, unit=..., note=...)`` (see progress.py);
    # the runner gives each step a ``Progress`` that draws a bar or prints periodic lines.
    progress: ProgressFn = no_progress
    # ``selfaug run --shard i/n``: a ``generate.shards.Shard``; generate steps then stage only
    # their shard's rows in files under ``work_dir`` and commit nothing (generate/shards.py).
    shard: Any = None

    def input(self, name: str) -> StepResult:
        return self.inputs[name]

    def resolve_path(self, path: str) -> Path:
        """A user path from the recipe, relative to the recipe's folder."""
        p = Path(path)
        return p if p.is_absolute() else (self.recipe_dir / p)


Executor = Callable[[StepContext], StepResult]

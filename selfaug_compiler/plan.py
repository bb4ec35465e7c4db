"""Plan and Step: the compiled DAG, content ids and (de)serialization.

A step's id hashes its kind, its content parameters, the ids of its inputs and the
implementation version of its kind. Speed parameters live in ``Step.speed`` and never
enter the id. ``plan.json`` is written with sorted keys so compiling twice is byte-identical.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PLAN_FORMAT = 1

# Bump a kind's version when its implementation changes what it produces: every id of that
# kind (and everything downstream) changes, so stale outputs are never reused.
IMPL_VERSIONS: dict[str, str] = {
    "ingest": "ingest/1",
    "generate": "generate/1",
    "judge": "judge/2",  # 2: replies cut off at max_new_tokens are refused (augment.accept_truncated)
    "mix": "mix/1",
    "train": "train/1",
    "evaluate": "evaluate/1",
    "interpolate": "interpolate/1",  # theta_alpha = (1 - alpha) base + alpha fine-tuned (issue 15.1)
    "diagnose": "diagnose/1",  # diagnose.kl_to_base: KL(base || fine-tuned) per token (issue 15.3)
    "report": "report/3",  # 2: meta.context (model, recipe, seed, training set by source), signed changes;
    # 3: right_to_wrong examples on retention rows with a significant drop (report/flips.py)
}

STEP_KINDS = tuple(IMPL_VERSIONS)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every hash in selfaug is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


@dataclass
class Step:
    """One node of the plan.

    name:    unique, human-readable (``generate.self_answer``, ``eval.before.arc_easy``).
    kind:    one of STEP_KINDS; the runner dispatches on it.
    inputs:  names of the steps whose outputs this one reads.
    params:  content parameters (enter the id).
    speed:   speed-only parameters (batch sizes, devices): never enter the id.
    outputs: what it writes, e.g. {"dataset": "gsm8k-train"} or {"model": "stage0"}.
    id:      content id, filled by ``Plan.assign_ids``.
    """

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    speed: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    id: str = ""

    def content_id(self, input_ids: list[str]) -> str:
        payload = {
            "kind": self.kind,
            "impl": IMPL_VERSIONS[self.kind],
            "params": self.params,
            "inputs": input_ids,
        }
        return sha256_hex(canonical_json(payload))


@dataclass
class Plan:
    recipe_name: str
    recipe_hash: str
    steps: list[Step]
    recipe_path: str | None = None
    format: int = PLAN_FORMAT
    meta: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def topological(self) -> list[Step]:
        """Steps in dependency order (stable: ties keep declaration order)."""
        by_name = {s.name: s for s in self.steps}
        done: set[str] = set()
        order: list[Step] = []
        visiting: set[str] = set()

        def visit(s: Step) -> None:
            if s.name in done:
                return
            if s.name in visiting:
                raise ValueError(f"cycle in plan at step {s.name}")
            visiting.add(s.name)
            for dep in s.inputs:
                visit(by_name[dep])
            visiting.discard(s.name)
            done.add(s.name)
            order.append(s)

        for s in self.steps:
            visit(s)
        return order

    def assign_ids(self) -> None:
        ids: dict[str, str] = {}
        for s in self.topological():
            s.id = s.content_id([ids[d] for d in s.inputs])
            ids[s.name] = s.id

    def to_json(self) -> str:
        data = {
            "format": self.format,
            "recipe_name": self.recipe_name,
            "recipe_hash": self.recipe_hash,
            "recipe_path": self.recipe_path,
            "meta": self.meta,
            "steps": [asdict(s) for s in self.steps],
        }
        return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        data = json.loads(text)
        steps = [Step(**s) for s in data["steps"]]
        return cls(
            recipe_name=data["recipe_name"],
            recipe_hash=data["recipe_hash"],
            steps=steps,
            recipe_path=data.get("recipe_path"),
            format=data.get("format", PLAN_FORMAT),
            meta=data.get("meta", {}),
        )

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "Plan":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

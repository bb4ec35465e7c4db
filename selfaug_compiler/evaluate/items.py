"""Benchmark items: what a scorer sees, independent of where the data came from.

A multiple-choice item is a list of (context, continuation) requests, exactly as
lm-evaluation-harness builds them: usually one shared context and one continuation per choice
(``" " + choice``); for partial-evaluation tasks (WinoGrande) one context per choice and one
shared continuation. ``norm_lengths`` are the character lengths lm-evaluation-harness divides
by for ``acc_norm`` (``len(choice)``); ``None`` where the task reports no ``acc_norm``.
A generation item is a prompt and a gold answer (plus tests for code).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class MCItem:
    id: str
    requests: tuple[tuple[str, str], ...]
    gold: int
    norm_lengths: tuple[int, ...] | None

    kind = "multiple_choice"

    @classmethod
    def shared_context(cls, id: str, query: str, choices: list[str], gold: int, delimiter: str = " ") -> "MCItem":
        """The usual form: one context, each choice scored as ``delimiter + choice``."""
        return cls(id, tuple((query, f"{delimiter}{c}") for c in choices), int(gold),
                   tuple(len(c) for c in choices))

    @classmethod
    def shared_continuation(cls, id: str, contexts: list[str], continuation: str, gold: int,
                            delimiter: str = " ") -> "MCItem":
        """Partial evaluation (WinoGrande): each choice is a context, the rest is scored."""
        return cls(id, tuple((c, f"{delimiter}{continuation}") for c in contexts), int(gold), None)

    @property
    def n_choices(self) -> int:
        return len(self.requests)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "requests": [list(r) for r in self.requests], "gold": self.gold,
                "norm_lengths": list(self.norm_lengths) if self.norm_lengths is not None else None}


@dataclass(frozen=True)
class GenItem:
    id: str
    prompt: str
    answer: str
    tests: str = ""  # code: python run after the candidate (asserts)
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    kind = "generation"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Item = MCItem | GenItem

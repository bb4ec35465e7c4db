"""The model as judge: it reads (question, reference, candidate) through templates/prompts/judge.j2
and answers yes or no. The raw reply is kept next to the parsed verdict, and which model gave it
(``judge_model``: the backend's provenance, the weights fingerprint of an in-process model, what a
server reported)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfaug_compiler.augment.prompts import render

DEFAULT_TEMPLATE = "prompts/judge.j2"
_WORD = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


@dataclass
class ModelVerdict:
    passed: bool | None  # None: the reply said neither yes nor no (counts as a failure)
    raw: str
    judge_model: dict[str, Any] | None = None


def parse_verdict(reply: str) -> bool | None:
    """The first standalone yes/no in the reply; None when there is none."""
    found = _WORD.search(reply or "")
    return None if found is None else found.group(1).lower() == "yes"


def judge_with_model(loaded: Any, items: list[dict], *, template: str = DEFAULT_TEMPLATE,
                     recipe_dir: Path | None = None, batch_size: int = 16,
                     max_new_tokens: int = 8, progress: Any = False) -> list[ModelVerdict]:
    """``items`` hold ``prompt``, ``gold`` and ``answer``; greedy decoding, one verdict per item.
    ``loaded``: a loaded model or a generation backend (``generate/backends``)."""
    from selfaug_compiler.generate.backends.steps import backend_of
    from selfaug_compiler.generate.engine import SamplingParams

    prompts = [render(template, recipe_dir=recipe_dir, prompt=it["prompt"], gold=it["gold"],
                      answer=it["answer"]) for it in items]
    backend = backend_of(loaded)
    outs = backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens),
                            seeds=list(range(len(prompts))), batch_size=batch_size, progress=progress)
    who = judge_provenance(loaded, backend)
    return [ModelVerdict(parse_verdict(o.text), o.text, {**who, **dict(getattr(o, "meta", None) or {})})
            for o in outs]


def judge_provenance(loaded: Any, backend: Any) -> dict[str, Any]:
    """The judge's backend provenance (backend, model, batch_invariant, ...) and, for a model loaded
    in-process, its weights fingerprint (a server's weights cannot be seen from here)."""
    out = dict(backend.provenance())
    fingerprint = getattr(loaded, "fingerprint", None)
    if backend.kind == "transformers" and isinstance(fingerprint, str):
        out["fingerprint"] = fingerprint
    return out

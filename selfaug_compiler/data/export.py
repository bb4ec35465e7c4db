"""``selfaug data export --format``: a dataset version as the conversations the train step sees.

The conversations are built by the train step's own functions (``train/step.py``
``training_rows``: the task's system prompt as a first message unless the row has one;
``train/formatting.py`` ``row_messages``), so an export is what was trained on. Formats:

- ``messages``: ``{"messages": [{role, content}, ...]}`` (OpenAI chat; TRL conversational
  language modeling, with ``assistant_only_loss`` every assistant turn is a target).
- ``trl``: ``{"prompt": [...], "completion": [last assistant turn]}`` (TRL's conversational
  prompt/completion; ``completion_only_loss`` trains on the last reply, as ``assistant_turns: last``).
- ``sharegpt``: ``{"conversations": [{from: system|human|gpt, value}, ...]}``.
- ``alpaca``: ``{"instruction", "input": "", "output"}`` for the last exchange, plus ``system`` and
  ``history`` (``[[user, assistant], ...]`` of the earlier turns) where present, as LLaMA-Factory reads them.

A completion-style training set (``model.prompt_format: completion``, ``models/completion.py``)
exports with ``--format trl`` as TRL's plain prompt/completion: ``{"prompt": <the completion text:
system prompt, prompt, newline>, "completion": <reply>}`` (TRL appends the EOS token, selfaug
trains on it too); the other formats write the conversations as data.

The system prompt and the prompt format come from the train step that read the version in a
recorded run of the store (``system_prompt_for``, ``prompt_format_for``), unless given. Standard library + pyarrow only (``data`` commands stay cheap).
"""

from __future__ import annotations

import json
from typing import Any

from selfaug_compiler.errors import SelfaugError

EXPORT_FORMATS = ("messages", "trl", "sharegpt", "alpaca")
_SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


def conversations(table: Any, system_prompt: str | None) -> list[list[dict[str, str]]]:
    """The conversations of a version's rows, as the train step builds them."""
    from selfaug_compiler.train.formatting import row_messages
    from selfaug_compiler.train.step import training_rows

    return [row_messages(row) for row in training_rows(table, system_prompt)]


def record(messages: list[dict[str, str]], fmt: str, prompt_format: str = "chat") -> dict[str, Any]:
    """One conversation as one record of ``fmt`` (``trl`` of a completion-style set: plain text)."""
    if fmt == "trl" and prompt_format == "completion":
        from selfaug_compiler.models.completion import completion_prompt

        return {"prompt": completion_prompt(messages[:-1]), "completion": messages[-1]["content"]}
    if fmt == "messages":
        return {"messages": messages}
    if fmt == "sharegpt":
        return {"conversations": [{"from": _SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in messages]}
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    if fmt == "trl":
        return {"prompt": messages[:last], "completion": [messages[last]]}
    if fmt == "alpaca":
        return _alpaca(messages[: last + 1])
    raise SelfaugError(f"unknown export format {fmt!r}", field="--format", expected=", ".join(EXPORT_FORMATS))


def _alpaca(messages: list[dict[str, str]]) -> dict[str, Any]:
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    turns = messages[1:] if system is not None else messages
    pairs: list[list[str]] = []
    pending: list[str] = []
    for m in turns:
        if m["role"] == "user":
            pending.append(m["content"])
        else:
            pairs.append(["\n\n".join(pending), m["content"]])
            pending = []
    out: dict[str, Any] = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
    if system is not None:
        out["system"] = system
    if len(pairs) > 1:
        out["history"] = pairs[:-1]
    return out


def system_prompt_for(con: Any, step_id: str | None) -> str | None:
    """The system prompt of the newest recorded train step that reads the output of ``step_id``."""
    return (_train_params_for(con, step_id) or {}).get("system_prompt")


def prompt_format_for(con: Any, step_id: str | None) -> str:
    """``model.prompt_format`` of the newest recorded train step that reads the output of ``step_id``."""
    from selfaug_compiler.models.completion import prompt_format

    return prompt_format(((_train_params_for(con, step_id) or {}).get("model") or {}).get("spec"))


def _train_params_for(con: Any, step_id: str | None) -> dict[str, Any] | None:
    if not step_id:
        return None
    for (plan_json,) in con.execute("SELECT plan_json FROM runs ORDER BY started_at DESC").fetchall():
        try:
            plan = json.loads(plan_json) if isinstance(plan_json, str) else plan_json
            if isinstance(plan, str):
                plan = json.loads(plan)
            steps = plan.get("steps", [])
        except (ValueError, AttributeError):
            continue
        names = {s.get("name") for s in steps if s.get("id") == step_id}
        for s in steps:
            if s.get("kind") == "train" and names & set(s.get("inputs") or []):
                return s.get("params") or {}
    return None


def export_table(table: Any, fmt: str, system_prompt: str | None, prompt_format: str = "chat") -> Any:
    """The records of ``fmt`` as an Arrow table with one JSON-typed column per field."""
    import pyarrow as pa

    if fmt not in EXPORT_FORMATS:
        raise SelfaugError(f"unknown export format {fmt!r}", field="--format", expected=", ".join(EXPORT_FORMATS))
    records = [record(m, fmt, prompt_format) for m in conversations(table, system_prompt)]
    return pa.Table.from_pylist(records) if records else pa.table({})

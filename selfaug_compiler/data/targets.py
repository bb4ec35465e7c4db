"""A task row needs a target: a row whose mapped response is missing or blank (and which has no
``messages``) cannot train, so `data import`, the ingest step and `validate` refuse it, naming
the first such row's line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from selfaug_compiler.errors import SelfaugError


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def first_without_target(responses: Iterable[Any], messages: Iterable[Any] | None = None) -> int | None:
    """Index of the first row with a blank response and no messages; None when every row has one.
    A column that is blank in every row is not a mapped target (a prompt-only source): None."""
    responses = list(responses)
    messages = list(messages) if messages is not None else [None] * len(responses)
    if all(_blank(r) for r in responses):
        return None
    return next((i for i, (r, m) in enumerate(zip(responses, messages)) if _blank(r) and _blank(m)), None)


def refuse_missing_target(index: int, column: str, where: str, path: Path | None) -> SelfaugError:
    """The error for row ``index`` (0-based) of ``where`` without a value in ``column``."""
    from selfaug_compiler.data import text

    kind = text.text_kind(path) if path is not None else None
    line = text.line_of_row(path, kind, index) if path is not None and kind else None
    at = f"line {line}" if line else f"row {index + 1}"
    return SelfaugError(f"{at} has no value in the response column {column!r}: a task row without a target "
                        "cannot train", file=where, line=line, field=column,
                        expected=f"a non-empty {column!r} in every row",
                        hint=f"fill in {column!r} on that row or drop the row (or map another column: "
                             "--map response=COLUMN / task.fields.response)")


def missing_target_problem(rows: list[dict[str, Any]], response_field: str | None, path: Path):
    """For validate: the Problem for the first of ``rows`` (read from the file ``path``) without a
    target, with the file's line in the message; None when every row has one."""
    from selfaug_compiler.data.sources import DEFAULT_CANDIDATES

    columns = {k for r in rows for k in r}
    column = response_field or next((c for c in DEFAULT_CANDIDATES["response"] if c in columns), None)
    if column is None or column not in columns:
        return None
    first = first_without_target([r.get(column) for r in rows], [r.get("messages") for r in rows])
    if first is None:
        return None
    problem = refuse_missing_target(first, column, str(path), path).problems[0]
    problem.message = f"{path.name}: {problem.message}"
    return problem

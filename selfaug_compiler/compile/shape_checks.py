"""validate's checks of a task's input shape (data/shapes.py): the shape's columns are there and
the sampled rows are conversations the ingest step will accept, each problem with the data file's
line and the fix. Standard library only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfaug_compiler.data import shapes

DEFAULT_FIELDS = ("question", "answer")


def task_shape(task: Any, columns: list[str]) -> str:
    """The shape the ingest step reads a task's rows with (``data/ingest.py`` decides the same way)."""
    if task.format == "auto" and (task.fields.prompt, task.fields.response) != DEFAULT_FIELDS:
        return "prompt_response"
    return shapes.resolve(task.format, columns)


def fields_apply(fields: Any, columns: list[str]) -> bool:
    """Whether ``fields.prompt``/``response`` name the columns to read (not another shape's rows)."""
    return (fields.prompt, fields.response) != DEFAULT_FIELDS or shapes.detect(columns) == "prompt_response"


def check_task_shape(checker: Any, task: Any, rows: list[dict[str, Any]], at: tuple[Any, ...],
                     path: Path | None) -> None:
    """Adds a problem for a missing column of the task's shape, or the first sampled row that is
    not a conversation of that shape."""
    columns = sorted({k for r in rows for k in r})
    if not rows:
        return
    shape = task_shape(task, columns)
    where = f"{path.name}: " if path is not None else ""
    missing = shapes.missing_columns(shape, columns)
    if missing:
        checker.add(at + ("format",), f"{where}the data has no column {', '.join(repr(c) for c in missing)} "
                    f"for the {shape} shape", expected=", ".join(shapes.SHAPE_COLUMNS[shape]),
                    found=", ".join(columns), hint="set task.format to the shape of the data (one of: "
                    + ", ".join(shapes.FORMATS) + ")")
        return
    if shape not in ("messages", "sharegpt", "prompt_completion"):
        return
    for i, row in enumerate(rows):
        if shape == "prompt_completion":
            if not shapes.is_conversation_value(row.get("prompt")):
                return  # plain strings: prompt/response rows
            value: Any = {"prompt": row.get("prompt"), "completion": row.get("completion")}
        else:
            value = row.get(shapes.SHAPE_COLUMNS[shape][0])
        try:
            shapes.conversation(value, shape)
        except shapes.ShapeError as exc:
            line = _line(path, i)
            checker.add(at + ("format",), f"{where}{'line ' + str(line) if line else 'row ' + str(i + 1)}: {exc} "
                        f"(read as {shape})", hint=exc.hint)
            return


def _line(path: Path | None, index: int) -> int | None:
    if path is None:
        return None
    from selfaug_compiler.data import text

    kind = text.text_kind(path)
    try:
        return text.line_of_row(path, kind, index) if kind else None
    except OSError:
        return None

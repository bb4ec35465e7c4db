"""Names of recipes, tasks, benchmarks, datasets and tags: one rule, checked in one place.

Letters, digits, ``_``, ``.`` and ``-`` only (no spaces, no control characters, no ``@`` which
separates a dataset from its version), at most ``NAME_MAX`` characters for the names a recipe
gives and ``STORED_NAME_MAX`` for dataset names and tags (dataset names are built from recipe
and task names plus a suffix such as ``-judge_self_dialogue.s3``, so they always fit).
The recipe schema uses ``NAME_PATTERN``/``NAME_MAX``; the store and ``selfaug data`` call
``check_name``.
"""

from __future__ import annotations

import re

from selfaug_compiler.errors import SelfaugError

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"  # pydantic matches the whole text: no trailing newline slips through
NAME_MAX = 64
STORED_NAME_MAX = 128
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_name(name: str, what: str = "dataset name", max_len: int = STORED_NAME_MAX) -> None:
    """Raise ``SelfaugError`` unless ``name`` is a valid name of at most ``max_len`` characters."""
    if isinstance(name, str) and _NAME.fullmatch(name) and len(name) <= max_len:
        return
    raise SelfaugError(f"invalid {what}", expected=f"1 to {max_len} letters, digits, '_', '.', '-'",
                       found=shown(name), hint="rename it: no spaces, control characters, '@' or other symbols")


def shown(value: object, width: int = 60) -> str:
    """A value for an error message: repr'd (control characters visible), clipped, with its length."""
    if not isinstance(value, str):
        return repr(value)
    text = repr(value[:width])
    return text if len(value) <= width else f"{text}… ({len(value)} characters)"

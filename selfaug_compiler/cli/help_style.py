"""`--help` in click's conventions: flags without a type, arguments upper-case in usage lines.

typer 0.29 (pinned in constraints.txt) draws every option's type in its rich help, flags
included (``--help <bool>``, ``--dry-run <bool>``), and writes required arguments as ``{target}``
in usage lines. Here a flag shows no type and a usage line reads ``selfaug run [OPTIONS] TARGET``.

``ClickStyleGroup`` is the root app's group class; every command it resolves (and, through
sub-groups, theirs) is switched to a subclass of its own class with the same overrides, so
command modules register commands as usual.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from typer.core import TyperGroup, TyperOption

_REQUIRED = re.compile(r"^\{([^{}]+)\}(\.\.\.)?$")
_OPTIONAL = re.compile(r"^\[([a-z][\w-]*)\](\.\.\.)?$")


class _FlagOption(TyperOption):
    """A boolean flag: no ``<bool>`` after its name."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def usage_piece(piece: str) -> str:
    """``{target}`` -> ``TARGET``, ``[name]...`` -> ``[NAME]...``; anything else unchanged."""
    for pattern, wrap in ((_REQUIRED, "{}"), (_OPTIONAL, "[{}]")):
        found = pattern.match(piece)
        if found:
            return wrap.format(found.group(1).upper().replace("-", "_")) + (found.group(2) or "")
    return piece


@lru_cache(maxsize=None)
def click_style(base: type) -> type:
    """``base`` (a typer command or group class) with click-style help."""
    if getattr(base, "_click_style", False):
        return base

    def get_params(self: Any, ctx: Any) -> list[Any]:
        params = base.get_params(self, ctx)
        for param in params:
            if type(param) is TyperOption and (param.is_flag or param.count):
                param.__class__ = _FlagOption
        return params

    def collect_usage_pieces(self: Any, ctx: Any) -> list[str]:
        return [usage_piece(p) for p in base.collect_usage_pieces(self, ctx)]

    def get_command(self: Any, ctx: Any, cmd_name: str) -> Any:
        command = base.get_command(self, ctx, cmd_name)
        if command is not None:
            command.__class__ = click_style(type(command))
        return command

    methods: dict[str, Any] = {"_click_style": True, "get_params": get_params,
                               "collect_usage_pieces": collect_usage_pieces}
    if hasattr(base, "get_command"):
        methods["get_command"] = get_command
    return type(f"ClickStyle{base.__name__}", (base,), methods)


ClickStyleGroup = click_style(TyperGroup)

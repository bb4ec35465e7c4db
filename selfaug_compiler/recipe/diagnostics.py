"""Turn pydantic validation errors into ``Problem``s a user can act on.

Each problem names the file:line:column of the offending YAML node (for a missing field, the
mapping that should hold it), the dotted field path, what was expected, what was found, and for
an unknown key the closest known names ("did you mean").
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from selfaug_compiler.errors import Problem
from selfaug_compiler.recipe.located import LNode, key_location, locate

_EXPECTED_BY_TYPE = {
    "float_parsing": "a number",
    "float_type": "a number",
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "missing": "this field to be given",
}


def dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "<recipe>"


def problems_from_validation(exc: ValidationError, root: LNode, model: type[BaseModel]) -> list[Problem]:
    return [_problem(err, root, model) for err in exc.errors(include_url=False)]


def _problem(err: dict[str, Any], root: LNode, model: type[BaseModel]) -> Problem:
    kind = err["type"]
    loc, found_path = locate(root, tuple(err["loc"]))
    if kind == "extra_forbidden":
        return _unknown_key(err, root, locate(root, tuple(err["loc"][:-1]))[1], model)
    if kind == "missing":
        name = str(err["loc"][-1])
        return Problem(
            f"required field `{name}` is missing",
            location=loc,
            field=dotted(found_path + (name,)),
            expected=f"`{name}:` in this mapping",
            found="nothing",
            hint=_field_description(model, root, found_path, name),
        )
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _bad_variant(err, root, found_path)
    return Problem(
        _message(err),
        location=loc,
        field=dotted(found_path),
        expected=_allowed_range(model, root, found_path, kind) or _expected(err),
        found=_found(err.get("input")),
    )


_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _allowed_range(model: type[BaseModel], root: LNode, path: tuple[Any, ...], kind: str) -> str | None:
    """For an out-of-range number, both ends of the field's range ("a value > 0 and <= 1000")."""
    if kind not in _BOUND_ERRORS or not path or not isinstance(path[-1], str):
        return None
    from selfaug_compiler.recipe.located import to_plain

    parent = model_at(model, to_plain(root), path[:-1])
    info = parent.model_fields.get(path[-1]) if parent else None
    bounds = [f"{word} {getattr(m, attr)}" for m in (info.metadata if info else [])
              for attr, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
              if getattr(m, attr, None) is not None]
    return "a value " + " and ".join(bounds) if bounds else None


def _unknown_key(err: dict[str, Any], root: LNode, parent: tuple[Any, ...], model: type[BaseModel]) -> Problem:
    key = str(err["loc"][-1])
    known = model_fields_at(model, root, parent)
    close = suggest(key, known)
    hint = f"did you mean `{close}`?" if close else None
    return Problem(
        f"unknown key `{key}`",
        location=key_location(root, parent, key) or locate(root, parent)[0],
        field=dotted(parent + (key,)),
        expected="one of: " + ", ".join(known) if known else "no extra keys",
        found=key,
        hint=hint,
    )


def _bad_variant(err: dict[str, Any], root: LNode, path: tuple[Any, ...]) -> Problem:
    ctx = err.get("ctx") or {}
    tag = str(ctx.get("discriminator", "kind")).strip("'")
    expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",") if t.strip()]
    given = ctx.get("tag")
    loc, found = locate(root, path + (tag,))
    close = difflib.get_close_matches(str(given), expected, n=1, cutoff=0.5) if given is not None else []
    return Problem(
        f"unknown {tag} `{given}`" if given is not None else f"`{tag}` is missing",
        location=loc,
        field=dotted(path + (tag,)),
        expected="one of: " + ", ".join(expected),
        found=repr(given) if given is not None else "nothing",
        hint=f"did you mean `{close[0]}`?" if close else None,
    )


# Common names from other tools, mapped to ours (checked before fuzzy matching).
_ALIASES = {
    "learning_rate": "lr",
    "num_epochs": "epochs",
    "num_train_epochs": "epochs",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "model_name": "ref",
    "model_name_or_path": "ref",
    "temp": "temperature",
    "max_tokens": "max_new_tokens",
    "per_device_train_batch_size": "batch_size",
    "max_seq_length": "max_length",
}


def suggest(key: str, known: list[str]) -> str | None:
    """The known name a user most likely meant, or None."""
    alias = _ALIASES.get(key)
    if alias in known:
        return alias
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    return close[0] if close else None


def _message(err: dict[str, Any]) -> str:
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg[0].lower() + msg[1:] if msg else "invalid value"


def _expected(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind in _EXPECTED_BY_TYPE:
        return _EXPECTED_BY_TYPE[kind]
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"`{ctx.get('discriminator', 'kind').strip(chr(39))}` set to one of {ctx.get('expected_tags')}"
    for key, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if key in ctx:
            return f"a value {word} {ctx[key]}"
    if kind == "string_pattern_mismatch":
        return f"text matching {ctx.get('pattern')}"
    return _message(err)


def _found(value: Any) -> str:
    text = repr(value)
    if isinstance(value, dict):
        text = "a mapping with keys " + ", ".join(map(str, value)) if value else "an empty mapping"
    elif isinstance(value, list):
        text = f"a list of {len(value)} items"
    elif value is None:
        text = "nothing (null)"
    return text if len(text) <= 120 else text[:117] + "..."


# ----------------------------------------------------------------------------- schema walking
def model_at(model: type[BaseModel], data: Any, path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping found at ``path`` in ``data``."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            data = data[part] if isinstance(data, list) and part < len(data) else None
            current = _item_type(current)
        else:
            if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
                return None
            data = data.get(part) if isinstance(data, dict) else None
            current = current.model_fields[part].annotation
        current = _choose_model(current, data)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def model_fields_at(model: type[BaseModel], root: LNode, path: tuple[Any, ...]) -> list[str]:
    from selfaug_compiler.recipe.located import to_plain

    found = model_at(model, to_plain(root), path)
    return list(found.model_fields) if found else []


def _field_description(model: type[BaseModel], root: LNode, path: tuple[Any, ...], name: str) -> str | None:
    from selfaug_compiler.recipe.located import to_plain

    parent = model_at(model, to_plain(root), path)
    info = parent.model_fields.get(name) if parent else None
    return f"`{name}`: {info.description}" if info is not None and info.description else None


def _item_type(annotation: Any) -> Any:
    for arg in typing.get_args(_unwrap(annotation)):
        if typing.get_origin(arg) is list or arg is list:
            return typing.get_args(arg)[0] if typing.get_args(arg) else Any
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0]
    return Any


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _choose_model(annotation: Any, data: Any) -> Any:
    """Pick the union member that ``data`` is meant to be (by its discriminator value)."""
    annotation = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        return annotation
    if origin in (typing.Union, types.UnionType):
        members = [_unwrap(a) for a in typing.get_args(annotation)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        for m in models:
            for tag in ("kind", "method"):
                field = m.model_fields.get(tag)
                if field is not None and isinstance(data, dict) and data.get(tag) == field.default:
                    return m
        lists = [m for m in members if typing.get_origin(m) is list]
        if isinstance(data, list) and lists:
            return lists[0]
        if models and isinstance(data, dict) and len(models) == 1:
            return models[0]
        if models and isinstance(data, dict):
            return _union_default_member(models, data)
        return annotation
    return annotation


def _union_default_member(models: list[type[BaseModel]], data: dict) -> type[BaseModel]:
    """With no discriminator given, the member whose default tag pydantic would use (the first)."""
    return models[0]

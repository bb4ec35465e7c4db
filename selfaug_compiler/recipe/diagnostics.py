"""Turn pydantic validation errors into ``Problem``s a user can act on.

Each problem names the file:line:column of the offending YAML node (for a missing field, the
mapping that should hold it), the dotted field path, what was expected, what was found, and for
an unknown key the closest known names ("did you mean").
"""

from __future__ import annotations

import difflib
import re
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
            hint=_field_description(model, root, found_path, name) or f"add a `{name}:` line to this mapping",
        )
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _bad_variant(err, root, found_path)
    expected, hint = _expected_and_hint(err, model, root, found_path)
    return Problem(
        _message(err),
        location=loc,
        field=dotted(found_path),
        expected=_allowed_range(model, root, found_path, kind) or expected,
        found=_found(err.get("input")),
        hint=hint,
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
    hint = f"did you mean `{close}`?" if close else "remove it, or check its indentation (it may belong to another section)"
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
    "gpu": "cuda",
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


def _expected_and_hint(err: dict[str, Any], model: type[BaseModel], root: LNode,
                       path: tuple[Any, ...]) -> tuple[str, str | None]:
    """What a value of the field looks like (with an example) and how to fix this one."""
    kind, value = err["type"], err.get("input")
    name = next((str(p) for p in reversed(path) if isinstance(p, str)), "")
    info = _field_info(model, root, path)
    default = info.default if info is not None else None
    about = f"`{name}`: {info.description}" if info is not None and info.description else None
    if kind in ("float_parsing", "float_type"):
        example = _number(default) if _is_number(default) else "1e-4"
        return f"a number such as {example}", f"write a number without quotes or units, e.g. `{name}: {example}`"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        example = default if _is_number(default) and isinstance(default, int) else 8
        why = "without decimals" if kind == "int_from_float" else "with digits only, no quotes or units"
        return f"a whole number such as {example}", f"write a whole number {why}, e.g. `{name}: {example}`"
    if kind in ("bool_parsing", "bool_type"):
        return "true or false", f"write `{name}: true` or `{name}: false`"
    if kind == "string_type":
        if isinstance(value, (list, dict)):
            shape = "list" if isinstance(value, list) else "mapping (check the indentation)"
            return "text", f"`{name}` is one text value, not a {shape}"
        return "text", f"quote it to keep it as text: `{name}: \"{value}\"`"
    if kind == "list_type":
        shown = value if not isinstance(value, dict) else "..."
        return "a list", f"write a list: `{name}: [{shown}]`, or one `- item` per line under `{name}:`"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        inner = _nested_model(info)
        listing = f" ({', '.join(inner.model_fields)})" if inner else ""
        return (_EXPECTED_BY_TYPE[kind], f"`{name}` holds settings{listing}: write `key: value` lines indented "
                f"under `{name}:`, or `{name}: {{key: value}}`")
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        close = suggest(str(value), options) if options else None
        return _expected(err), f"did you mean `{close}`?" if close else about or "use one of the values listed"
    if kind in _BOUND_ERRORS and about is None and _is_number(default):
        return _expected(err), f"the default is {_number(default)}"
    return _expected(err), about


def _field_info(model: type[BaseModel], root: LNode, path: tuple[Any, ...]) -> Any:
    """The pydantic FieldInfo of the field at ``path`` (of the list holding it, for a list item)."""
    from selfaug_compiler.recipe.located import to_plain

    while path and isinstance(path[-1], int):
        path = path[:-1]
    if not path:
        return None
    parent = model_at(model, to_plain(root), path[:-1])
    return parent.model_fields.get(str(path[-1])) if parent else None


def _nested_model(info: Any) -> type[BaseModel] | None:
    """The settings model a field holds (the first, for a union of variants)."""
    if info is None:
        return None
    found = _choose_model(info.annotation, None)
    for candidate in [found, *typing.get_args(_unwrap(found))]:
        candidate = _unwrap(candidate)
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: float) -> str:
    """As a recipe would write it: 1e-4, 0.03, 8."""
    text = f"{value:e}" if value and abs(value) < 0.01 else f"{value:g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return text


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

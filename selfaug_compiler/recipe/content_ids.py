"""What of a recipe enters content ids: ``speed_field`` (never), ``added_field`` (only when it is
set to something other than its default), and ``content_view``, the plain JSON data step ids are
made of. ``recipe/schema.py`` re-exports all of it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

SPEED = "speed"


def speed_field(default: Any = ..., **kwargs: Any) -> Any:
    """A field that only changes speed (batch sizes, devices, workers): excluded from step ids."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra["x-affects"] = SPEED
    return Field(default, json_schema_extra=extra, **kwargs)


def added_field(default: Any, **kwargs: Any) -> Any:
    """A content field added after recipes were run: at its default it stays out of content ids,
    so adding it left the ids of recipes that do not set it as they were. Never change such a
    default; where the default changes outputs, bump ``plan.IMPL_VERSIONS`` of the affected kinds."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra["x-id-omit-default"] = True
    return Field(default, json_schema_extra=extra, **kwargs)


def is_speed_field(model: type[BaseModel], name: str) -> bool:
    info = model.model_fields[name]
    extra = info.json_schema_extra
    return isinstance(extra, dict) and extra.get("x-affects") == SPEED


def _omitted_default(value: BaseModel, name: str) -> bool:
    """An ``added_field`` whose content equals its default's (not part of content ids): a section that
    differs from its default only in speed fields is omitted too."""
    info = type(value).model_fields[name]
    extra = info.json_schema_extra
    if not (isinstance(extra, dict) and extra.get("x-id-omit-default")):
        return False
    current = getattr(value, name)
    return current == info.default or content_view(current) == content_view(info.default)


def content_view(value: Any) -> Any:
    """The value without its speed fields (and ``added_field``s at their default), as plain JSON
    data (for content ids)."""
    if isinstance(value, BaseModel):
        return {
            name: content_view(getattr(value, name))
            for name in type(value).model_fields
            if not is_speed_field(type(value), name) and not _omitted_default(value, name)
        }
    if isinstance(value, (list, tuple)):
        return [content_view(v) for v in value]
    if isinstance(value, dict):
        return {k: content_view(v) for k, v in value.items()}
    return value

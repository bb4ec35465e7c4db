"""YAML as a tree of located nodes: every mapping, list and scalar knows file:line:column.

PyYAML's ``compose`` keeps marks on nodes; we convert that node tree into ``LMap`` / ``LList`` /
``LScalar`` so layers (defaults, ``extends`` chain, the recipe, ``--set``) can be merged while each
value keeps the place it came from. ``to_plain`` gives the data pydantic validates; ``locate``
maps a field path back to the place a user can fix.

Limits (``check_yaml_limits``, applied before anything is built): at most ``MAX_DEPTH`` levels
of nested mappings/lists, at most ``MAX_NODES`` values once every alias (``*name``) is expanded,
and no alias inside the collection it names. A recipe is a few dozen values six levels deep; these
bounds refuse "billion laughs" alias bombs and deeply nested input with one message in
milliseconds, before PyYAML's recursive composer or our conversion could blow the stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import yaml

from selfaug_compiler.errors import Location, SelfaugError

try:  # libyaml is much faster; marks are the same
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


@dataclass
class LScalar:
    value: Any
    loc: Location


@dataclass
class LList:
    items: list["LNode"]
    loc: Location


@dataclass
class LMap:
    items: dict[str, "LNode"]
    loc: Location
    key_locs: dict[str, Location] = field(default_factory=dict)


LNode = Union[LScalar, LList, LMap]


def _loc(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


MAX_DEPTH = 64  # nested mappings/lists
MAX_NODES = 100_000  # values after alias expansion, per recipe (all extends files together)

_OPENERS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSERS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def check_yaml_limits(text: str, file: str, budget: int = MAX_NODES) -> int:
    """Scan YAML events (no tree is built) and refuse input over the limits; returns the number
    of values after alias expansion. Syntax errors are left to the composer's own message."""
    loader = _Loader(text)
    count, depth = 0, 0
    open_: list[list[Any]] = []  # [anchor, count at start, depth at start, deepest inside]
    sizes: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels it adds)
    try:
        while True:
            event = loader.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                break
            if isinstance(event, _OPENERS):
                count, depth = count + 1, depth + 1
                if depth > MAX_DEPTH:
                    raise _too_deep(file, event.start_mark)
                open_.append([event.anchor, count - 1, depth, depth])
            elif isinstance(event, _CLOSERS):
                anchor, start, first, deepest = open_.pop()
                if open_:
                    open_[-1][3] = max(open_[-1][3], deepest)
                if anchor:
                    sizes[anchor] = (count - start, deepest - first + 1)
                depth -= 1
            elif isinstance(event, yaml.ScalarEvent):
                count += 1
                if event.anchor:
                    sizes[event.anchor] = (1, 0)
            elif isinstance(event, yaml.AliasEvent):
                if any(entry[0] == event.anchor for entry in open_):
                    raise _limit_error(file, event.start_mark, f"alias `*{event.anchor}` refers to a collection "
                                       "that contains it (a recursive structure)", "aliases to finished values only",
                                       f"*{event.anchor} inside &{event.anchor}", "repeat the value instead of the alias")
                values, levels = sizes.get(event.anchor, (1, 0))
                count += values
                if depth + levels > MAX_DEPTH:
                    raise _too_deep(file, event.start_mark)
                if open_:
                    open_[-1][3] = max(open_[-1][3], depth + levels)
            if count > budget:
                raise _limit_error(file, event.start_mark, f"YAML expands to more than {MAX_NODES:,} values "
                                   "(aliases count each time they are used; a recipe and its extends files together)",
                                   f"at most {MAX_NODES:,} values",
                                   "an alias bomb or an oversized file", "remove the nested aliases; list data "
                                   "belongs in a data file, not in the recipe")
    except yaml.YAMLError:
        pass  # parse_yaml reports it with the usual message
    finally:
        loader.dispose()
    return count


def _too_deep(file: str, mark: Any) -> SelfaugError:
    return _limit_error(file, mark, f"YAML nested more than {MAX_DEPTH} levels deep",
                        f"at most {MAX_DEPTH} levels of nested mappings and lists (a recipe needs about 6)",
                        f"more than {MAX_DEPTH} levels", "flatten the structure")


def _limit_error(file: str, mark: Any, message: str, expected: str, found: str, hint: str) -> SelfaugError:
    return SelfaugError(message, file=file, line=mark.line + 1 if mark else None,
                        column=mark.column + 1 if mark else None, expected=expected, found=found, hint=hint)


def parse_yaml(text: str, file: str, budget: int = MAX_NODES) -> LNode | None:
    """Compose YAML text into located nodes; None for an empty document. Input over the limits
    (``check_yaml_limits``) is refused before it is composed."""
    check_yaml_limits(text, file, budget)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _convert(node, loader, file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SelfaugError(
            f"not valid YAML: {exc.problem or exc.context}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            expected="a YAML mapping of recipe sections",
            found=(exc.context or "").strip() or None,
            hint="check indentation, colons and quotes around this line",
        ) from None
    except yaml.YAMLError as exc:
        raise SelfaugError(f"not valid YAML: {exc}", file=file, hint="is this a text YAML file?") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise SelfaugError(f"a value cannot be read: {str(exc).split(';')[0]}", file=file,
                           expected="numbers of ordinary size", hint="quote it if it is meant as text") from None
    finally:
        loader.dispose()


def _convert(node: yaml.Node, loader: Any, file: str) -> LNode:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # YAML merge keys (<<)
        out = LMap({}, _loc(file, node.start_mark))
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            key_loc = _loc(file, key_node.start_mark)
            if not isinstance(key, str):
                raise SelfaugError(
                    "mapping keys must be names", file=file, line=key_loc.line, column=key_loc.column,
                    expected="a text key", found=repr(key),
                )
            if key in out.items:
                raise SelfaugError(
                    f"key `{key}` appears twice in the same mapping", file=file, line=key_loc.line,
                    column=key_loc.column, hint=f"first given at line {out.key_locs[key].line}; keep one",
                )
            out.items[key] = _convert(value_node, loader, file)
            out.key_locs[key] = key_loc
        return out
    if isinstance(node, yaml.SequenceNode):
        return LList([_convert(n, loader, file) for n in node.value], _loc(file, node.start_mark))
    return LScalar(loader.construct_object(node), _loc(file, node.start_mark))


def from_plain(value: Any, loc: Location) -> LNode:
    """Wrap plain data (e.g. a parsed ``--set`` value) in nodes that all point at ``loc``."""
    if isinstance(value, dict):
        return LMap({str(k): from_plain(v, loc) for k, v in value.items()}, loc, {str(k): loc for k in value})
    if isinstance(value, list):
        return LList([from_plain(v, loc) for v in value], loc)
    return LScalar(value, loc)


def to_plain(node: LNode) -> Any:
    if isinstance(node, LMap):
        return {k: to_plain(v) for k, v in node.items.items()}
    if isinstance(node, LList):
        return [to_plain(v) for v in node.items]
    return node.value


DISCRIMINATORS = ("method", "kind")


def deep_merge(base: LNode, over: LNode) -> LNode:
    """``over`` wins; mappings merge key by key, everything else (lists, scalars) is replaced.

    A mapping that switches variant (another ``method:`` or ``kind:``, e.g. ``augment: {method:
    none}`` over a base's ``sa_sft``) replaces the base mapping: the old variant's keys would not fit.
    """
    if isinstance(base, LMap) and isinstance(over, LMap) and not _variant_changes(base, over):
        items = dict(base.items)
        key_locs = dict(base.key_locs)
        for key, value in over.items.items():
            items[key] = deep_merge(items[key], value) if key in items else value
            key_locs[key] = over.key_locs.get(key, over.loc)
        return LMap(items, over.loc, key_locs)
    return over


def _variant_changes(base: LMap, over: LMap) -> bool:
    """True when ``over`` picks another variant (``method:``/``kind:``): then it replaces ``base``."""
    for tag in DISCRIMINATORS:
        b, o = base.items.get(tag), over.items.get(tag)
        if isinstance(b, LScalar) and isinstance(o, LScalar) and b.value != o.value:
            return True
    return False


def locate(root: LNode, path: tuple[Any, ...]) -> tuple[Location, tuple[Any, ...]]:
    """The location of the deepest node along ``path`` and the part of the path that was found.

    Path elements that match nothing in the data (pydantic's union tags such as ``sa_sft`` or
    ``function-after[...]``) are skipped, so pydantic's error locations can be passed as they are.
    """
    node, found = root, ()
    for part in path:
        if isinstance(node, LMap) and isinstance(part, str) and part in node.items:
            node, found = node.items[part], found + (part,)
        elif isinstance(node, LList) and isinstance(part, int) and 0 <= part < len(node.items):
            node, found = node.items[part], found + (part,)
    return node.loc, found


def key_location(root: LNode, parent: tuple[Any, ...], key: str) -> Location | None:
    """Where key ``key`` of the mapping at ``parent`` was written (for unknown-key errors)."""
    node = root
    for part in parent:
        if isinstance(node, LMap) and part in node.items:
            node = node.items[part]
        elif isinstance(node, LList) and isinstance(part, int) and 0 <= part < len(node.items):
            node = node.items[part]
    if isinstance(node, LMap):
        return node.key_locs.get(key)
    return None


def set_path(root: LMap, path: list[str], value: LNode) -> None:
    """Set ``value`` at a dotted path, creating mappings on the way (list items by index)."""
    node: LNode = root
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, LList):
            if not part.isdigit() or int(part) >= len(node.items):
                raise KeyError(f"`{'.'.join(path[:i])}` is a list of {len(node.items)} items; no item {part}")
            if last:
                node.items[int(part)] = value
                return
            node = node.items[int(part)]
            continue
        if not isinstance(node, LMap):
            raise KeyError(f"`{'.'.join(path[:i])}` is a single value, it has no field `{part}`")
        if last:
            node.items[part] = deep_merge(node.items[part], value) if part in node.items else value
            node.key_locs[part] = value.loc
            return
        if part not in node.items:
            node.items[part] = LMap({}, value.loc)
            node.key_locs[part] = value.loc
        node = node.items[part]

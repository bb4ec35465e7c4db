"""Load a recipe: YAML with line numbers, ``extends``, ``--set`` overrides, validation.

Precedence, lowest first:

1. the schema's defaults (``recipe/schema.py``);
2. the ``extends`` chain, base first (a base's own ``extends`` is applied before it);
3. the recipe file itself;
4. ``--set a.b=value`` overrides, in the order given.

Layers merge key by key: mappings merge recursively, anything else (a scalar, a list) replaces
the lower layer's value entirely. ``extends`` paths are relative to the file that names them
(a string or a list of strings, applied in order); a cycle is an error naming the chain. Other
relative paths in a recipe (data files, templates) are relative to the recipe file given on the
command line. ``--set`` values are parsed as YAML (``--set train.lr=1e-4``,
``--set eval.retention=[piqa,sciq]``) and validated like the file; their errors name the
``--set`` argument.

Limits, each refused with one message: YAML nesting and alias expansion (``located.py``:
``MAX_DEPTH`` levels, ``MAX_NODES`` values for the recipe and all its bases together), a file
over ``MAX_FILE_BYTES``, an ``extends`` graph of more than ``MAX_EXTENDS_FILES`` file loads
(a base named twice counts twice, so repeated diamonds cannot fan out) or ``MAX_EXTENDS_DEPTH``
levels. Bases must lie inside the recipe's project (``paths.py``) unless the user opts in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from selfaug_compiler.errors import Location, Problem, SelfaugError
from selfaug_compiler.recipe.diagnostics import dotted, problems_from_validation
from selfaug_compiler.recipe.located import (
    MAX_DEPTH,
    MAX_NODES,
    LList,
    LMap,
    LNode,
    LScalar,
    check_yaml_limits,
    deep_merge,
    from_plain,
    locate,
    parse_yaml,
    set_path,
    to_plain,
)
from selfaug_compiler.recipe.paths import outside_hint, outside_project, project_root
from selfaug_compiler.recipe.schema import Recipe

EXTENDS = "extends"
MAX_FILE_BYTES = 1 << 20  # a recipe is a few KiB
MAX_EXTENDS_FILES = 32  # file loads in one recipe's extends graph, repeats included
MAX_EXTENDS_DEPTH = 8


@dataclass
class _Loading:
    """What one ``load_recipe`` call has read so far (the limits span every extends file)."""

    root: Path  # the top recipe's project: bases must stay inside it
    files: list[Path]
    nodes: int = 0


@dataclass
class LoadedRecipe:
    """A validated recipe plus where every value came from."""

    recipe: Recipe
    path: Path  # the recipe file as given
    tree: LMap  # merged located tree (all layers)
    files: list[Path]  # every file read, base first

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def where(self, *path: Any) -> Location:
        """The location of the value at a field path (or of the nearest enclosing mapping)."""
        return locate(self.tree, tuple(path))[0]


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> LoadedRecipe:
    """Read, merge and validate a recipe; raises ``SelfaugError`` on any user mistake."""
    path = Path(path)
    tree, files = read_tree(path, overrides)
    data = to_plain(tree)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise SelfaugError(problems=missing_model(tree) + problems_from_validation(exc, tree, Recipe)) from None
    if missing_model(tree):
        raise SelfaugError(problems=missing_model(tree))
    return LoadedRecipe(recipe=recipe, path=path, tree=tree, files=files)


def missing_model(tree: LMap) -> list[Problem]:
    """A recipe file must name its base model (issue 11.7): a forgotten ``model:`` would quietly
    fine-tune the embedded default. (Python code building ``Recipe`` objects keeps the default.)"""
    if "model" in tree.items:
        return []
    return [Problem("the recipe names no base model", location=Location(tree.loc.file, 1, 1), field="model",
                    expected="a model section, e.g. `model: {ref: packaged:smollm2-135m-instruct}`",
                    hint="add `model: {ref: ...}` (packaged:NAME, a hub id, a local folder or a .gguf file); "
                         "write `model: {ref: packaged:smollm2-135m-instruct}` for the embedded default")]


def read_tree(path: Path, overrides: list[str] | None = None) -> tuple[LMap, list[Path]]:
    """The merged located tree (extends, file, ``--set``) before validation, and the files read."""
    files: list[Path] = []
    tree = _load_with_extends(path, stack=[], state=_Loading(project_root(path), files))
    for arg in overrides or []:
        _apply_set(tree, arg)
    return tree, files


def read_text(path: Path, *, named_at: Location | None = None, what: str = "recipe") -> str:
    """A UTF-8 text file, or a SelfaugError saying why not."""
    loc = named_at or Location(str(path))
    if not path.is_file():
        raise SelfaugError(
            f"{what} file `{path}` does not exist" if not path.exists() else f"`{path}` is not a file",
            problems=None, file=loc.file, line=loc.line, column=loc.column,
            expected=f"a {what} YAML file", found=str(path), hint="check the path (relative paths start at the including file)",
        )
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SelfaugError(
            f"{what} file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}", file=str(path), line=loc.line,
            expected=f"a {what} YAML file of at most {MAX_FILE_BYTES >> 10} KiB", found=f"{size:,} bytes",
            hint="is this the right file? data belongs in a data file the recipe names",
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SelfaugError(
            f"{what} is not UTF-8 text (binary file?)", file=str(path), line=line,
            expected="a UTF-8 YAML text file", found=f"byte {raw[exc.start]:#04x} at offset {exc.start}",
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise SelfaugError(
            f"{what} contains NUL bytes (binary file?)", file=str(path), line=line,
            expected="a UTF-8 YAML text file", found="a NUL byte",
        )
    return text


def _load_with_extends(path: Path, stack: list[Path], state: _Loading, named_at: Location | None = None) -> LMap:
    resolved = path.resolve()
    if named_at is not None:
        _check_base(path, stack, state, named_at)
    if resolved in stack:
        chain = " -> ".join(str(p.name) for p in stack[stack.index(resolved):] + [resolved])
        loc = named_at or Location(str(path))
        raise SelfaugError(
            f"`extends` forms a cycle: {chain}", file=loc.file, line=loc.line, column=loc.column,
            expected="a chain of bases that ends", found=chain, hint="remove one `extends` from the cycle",
        )
    tree = _parse_file(path, named_at, state)
    state.files.append(path)
    merged: LNode | None = None
    for base_name, base_loc in _extends_of(tree, path):
        base_path = path.parent / base_name
        base = _load_with_extends(base_path, stack + [resolved], state, named_at=base_loc)
        merged = base if merged is None else deep_merge(merged, base)
    if EXTENDS in tree.items:
        del tree.items[EXTENDS]
        tree.key_locs.pop(EXTENDS, None)
    result = tree if merged is None else deep_merge(merged, tree)
    assert isinstance(result, LMap)
    return result


def _check_base(path: Path, stack: list[Path], state: _Loading, at: Location) -> None:
    """An ``extends`` base: inside the project, within the graph limits."""
    where = dict(file=at.file, line=at.line, column=at.column, field=EXTENDS)
    if outside_project(path, state.root):
        raise SelfaugError(
            f"`extends` names `{path}`, outside the recipe's project ({state.root})", **where,
            expected=f"a recipe file inside {state.root}", found=str(path.resolve()), hint=outside_hint(),
        )
    if len(stack) >= MAX_EXTENDS_DEPTH:
        raise SelfaugError(
            f"`extends` chain is more than {MAX_EXTENDS_DEPTH} files deep", **where,
            expected=f"at most {MAX_EXTENDS_DEPTH} levels of bases", found=" -> ".join(p.name for p in stack),
            hint="let a recipe extend one shared base instead of a long chain",
        )
    if len(state.files) >= MAX_EXTENDS_FILES:
        raise SelfaugError(
            f"`extends` reads more than {MAX_EXTENDS_FILES} files (a base named by several recipes is read "
            "each time)", **where,
            expected=f"at most {MAX_EXTENDS_FILES} file loads for one recipe", found=f"{len(state.files)} loads so far",
            hint="name each base once; repeated diamonds of `extends` multiply the loads",
        )


def _parse_file(path: Path, named_at: Location | None, state: _Loading) -> LMap:
    text = read_text(path, named_at=named_at)
    tree = parse_yaml(text, str(path), budget=MAX_NODES - state.nodes)
    state.nodes += _size(tree)
    if tree is None:
        raise SelfaugError(
            "recipe is empty", file=str(path), line=1, column=1,
            expected="a mapping with at least `name:` and `task:`", found="an empty document",
            hint="start from recipes/default.yaml",
        )
    if not isinstance(tree, LMap):
        # the type only: the file may not be a recipe at all, and its content is not ours to print
        shape = "a list" if isinstance(tree, LList) else f"a single {type(tree.value).__name__} value"
        raise SelfaugError(
            "a recipe must be a mapping of sections", file=str(path), line=tree.loc.line, column=tree.loc.column,
            expected="`name:`, `task:`, `augment:`, ... at the top level", found=shape,
        )
    return tree


def _extends_of(tree: LMap, path: Path) -> list[tuple[str, Location]]:
    node = tree.items.get(EXTENDS)
    if node is None:
        return []
    values = node.items if isinstance(node, LList) else [node]
    out = []
    for value in values:
        if not isinstance(value, LScalar) or not isinstance(value.value, str) or not value.value:
            raise SelfaugError(
                "`extends` must name a recipe file", file=value.loc.file, line=value.loc.line, column=value.loc.column,
                field=EXTENDS, expected="a relative path such as `default.yaml` (or a list of them)",
                found=repr(to_plain(value)),
            )
        out.append((value.value, value.loc))
    return out


def _size(node: LNode | None) -> int:
    """Values in a tree (iterative: the depth is bounded, but this stays safe regardless)."""
    count, todo = 0, [node] if node is not None else []
    while todo:
        item = todo.pop()
        count += 1
        if isinstance(item, LMap):
            todo.extend(item.items.values())
        elif isinstance(item, LList):
            todo.extend(item.items)
    return count


def _apply_set(tree: LMap, arg: str) -> None:
    where = Location(f"--set {arg}")
    key, sep, raw = arg.partition("=")
    key = key.strip()
    if sep and key.count(".") >= MAX_DEPTH:
        raise SelfaugError(problems=[Problem(
            f"--set key is more than {MAX_DEPTH} fields deep", location=where, field=key[:80],
            expected="a field path such as train.lr", found=f"{key.count('.') + 1} parts",
        )])
    if not sep or not key or any(not part for part in key.split(".")):
        raise SelfaugError(
            problems=[Problem(
                "bad --set argument", location=where, expected="KEY.PATH=VALUE, e.g. train.lr=1e-4", found=arg,
            )]
        )
    try:
        check_yaml_limits(raw, str(where))
        value = yaml.safe_load(raw) if raw.strip() else ""
    except ValueError as exc:  # an integer of more than 4300 digits
        raise SelfaugError(problems=[Problem(
            f"the value of --set {key} cannot be read: {str(exc).split(';')[0]}", location=where, field=key,
            expected="a number of ordinary size", found=f"{len(raw):,} characters",
        )]) from None
    except yaml.YAMLError as exc:
        raise SelfaugError(
            problems=[Problem(
                f"the value of --set {key} is not valid YAML", location=where, field=key,
                expected="a YAML value: 1e-4, true, text, [a, b], {r: 8}", found=raw,
                hint=str(getattr(exc, "problem", "") or exc),
            )]
        ) from None
    if key == EXTENDS:
        raise SelfaugError(problems=[Problem("`extends` cannot be set from the command line", location=where, field=key)])
    try:
        set_path(tree, key.split("."), from_plain(value, where))
    except KeyError as exc:
        raise SelfaugError(
            problems=[Problem(f"cannot set {key}: {exc.args[0]}", location=where, field=key, found=arg)]
        ) from None


def describe_path(path: tuple[Any, ...]) -> str:
    return dotted(path)

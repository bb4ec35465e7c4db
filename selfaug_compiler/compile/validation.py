"""`selfaug validate`'s whole pass: every problem of a recipe in one report, sorted by file:line.

A recipe with schema errors (a typo in ``method:``, ``lr: fast``) cannot be validated into a
``Recipe``, yet the other checks (data, templates, benchmark names, model) can still run on the
parts that are fine. So, after the schema errors are collected, the values at fault are taken
out of a copy of the recipe's tree (a bad value falls back to its default; a mapping missing a
required field, or with an unknown variant, is taken out whole) until the rest validates, and
``check_recipe`` runs on that. Its problems about the values taken out are dropped (they would be
about the defaults, not the user's text); the others join the schema errors. When nothing valid
is left (no ``task``, no ``name``, a YAML syntax error), the schema errors are all there is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from selfaug_compiler.compile.checks import CheckReport, check_recipe
from selfaug_compiler.errors import Problem, SelfaugError
from selfaug_compiler.recipe.diagnostics import dotted, problems_from_validation
from selfaug_compiler.recipe.loader import LoadedRecipe, missing_model, read_tree
from selfaug_compiler.recipe.located import LList, LMap, LNode, locate, to_plain
from selfaug_compiler.recipe.schema import Recipe

MAX_REPAIRS = 20  # validation rounds; each takes at least one value out


@dataclass
class Validation:
    file: str
    problems: list[Problem] = field(default_factory=list)
    report: CheckReport | None = None  # None: the recipe is not valid (no budget, no model facts)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def validate_recipe(path: Path, overrides: list[str] | None = None) -> Validation:
    """Every problem of one recipe (never raises for a user mistake)."""
    try:
        tree, files = read_tree(path, overrides)
    except SelfaugError as exc:  # unreadable YAML, limits, extends: nothing else can run
        return Validation(str(path), sort_problems(exc.problems))
    try:
        recipe = Recipe.model_validate(to_plain(tree))
    except ValidationError as exc:
        problems = missing_model(tree) + problems_from_validation(exc, tree, Recipe)
        repaired = _repair(tree, exc)
        if repaired is not None:
            recipe, partial, removed = repaired
            report = check_recipe(LoadedRecipe(recipe=recipe, path=path, tree=partial, files=files))
            problems += [p for p in report.problems
                         if not _under(p.field, removed) and not _reads_removed(p, removed) and p not in problems]
        return Validation(str(path), sort_problems(problems))
    if missing_model(tree):
        return Validation(str(path), missing_model(tree))
    report = check_recipe(LoadedRecipe(recipe=recipe, path=path, tree=tree, files=files))
    return Validation(str(path), sort_problems(report.problems), report)


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """By file, line and column; problems without a line (``--set``, whole-file ones) last."""
    def key(p: Problem) -> tuple[Any, ...]:
        loc = p.location
        if loc is None or loc.line is None:
            return (1, loc.file if loc and loc.file else "", 0, 0)
        return (0, loc.file or "", loc.line, loc.column or 0)

    return sorted(problems, key=key)


def _repair(tree: LMap, exc: ValidationError) -> tuple[Recipe, LMap, list[str]] | None:
    """(the recipe without the bad values, its tree, the dotted paths taken out), or None."""
    partial = copy.deepcopy(tree)
    removed: list[str] = []
    for _ in range(MAX_REPAIRS):
        paths = {_fault(partial, err) for err in exc.errors(include_url=False)}
        if () in paths or not paths:
            return None
        for path in sorted(paths, key=lambda p: (len(p), p[-1] if isinstance(p[-1], int) else -1), reverse=True):
            if _delete(partial, path):
                removed.append(dotted(path))
        try:
            return Recipe.model_validate(to_plain(partial)), partial, removed
        except ValidationError as again:
            exc = again
    return None


def _fault(tree: LMap, err: dict[str, Any]) -> tuple[Any, ...]:
    """The path of the value to take out for one validation error (() when it is the whole recipe).

    The deepest node of the error's location that the tree holds: the bad value itself, an
    unknown key, or for a missing field (or an unknown ``kind``/``method``) the mapping around it.
    """
    return locate(tree, tuple(err["loc"]))[1]


def _delete(tree: LMap, path: tuple[Any, ...]) -> bool:
    node: LNode = tree
    for part in path[:-1]:
        node = node.items[part]  # type: ignore[union-attr, index]
    last = path[-1]
    if isinstance(node, LMap) and last in node.items:
        del node.items[last]
        node.key_locs.pop(last, None)
        return True
    if isinstance(node, LList) and isinstance(last, int) and 0 <= last < len(node.items):
        node.items.pop(last)
        return True
    return False


def _under(field_path: str | None, removed: list[str]) -> bool:
    if not field_path:
        return False
    return any(field_path == r or field_path.startswith(r + ".") for r in removed)


# Fields other checks read by name: with the user's value taken out, a check about its default
# (a `choice` judge "needs answer_type choice" after `answer_type: choise`) is not the user's
# mistake; the typo alone is reported.
READ_BY_OTHER_CHECKS = ("answer_type",)


def _reads_removed(problem: Problem, removed: list[str]) -> bool:
    leaves = {r.rsplit(".", 1)[-1] for r in removed} & set(READ_BY_OTHER_CHECKS)
    text = f"{problem.message} {problem.expected or ''}"
    return any(leaf in text for leaf in leaves)

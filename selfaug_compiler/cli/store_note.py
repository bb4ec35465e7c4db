"""Naming the store a command uses, so nobody reads or writes the wrong one unknowingly.

The demo and the lab use ``.selfaug/lab.duckdb`` (their study files say so); everything else
defaults to ``.selfaug/store.duckdb``. Commands print the absolute path they use and, when a
dataset or the store itself is missing, the other store files next to it.
"""

from __future__ import annotations

import os
from pathlib import Path


def store_source(explicit: object = None, recipe_store_path: str | None = None) -> str:
    """Where the store path came from, in the precedence of ``resolve_store_path``."""
    if explicit:
        return "--store"
    if os.environ.get("SELFAUG_STORE"):
        return "$SELFAUG_STORE"
    if recipe_store_path:
        return "the recipe's store.path"
    return "the default"


def other_stores(path: Path) -> str:
    """``--store A, --store B`` for the other store files in ``path``'s folder ('' if none)."""
    path = Path(path).resolve()
    try:
        found = sorted(p for p in path.parent.glob("*.duckdb") if p.is_file() and p.resolve() != path)
    except OSError:
        return ""
    return ", ".join(f"--store {shown_path(p)}" for p in found)


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(Path(path).resolve())


def store_line(path: Path, source: str) -> str:
    """``store: /abs/path (from --store)``, with the other stores when this one does not exist yet."""
    path = Path(path).resolve()
    line = f"store: {path} (from {source})"
    if not path.exists():
        others = other_stores(path)
        line += "; it does not exist yet" + (f" (other stores next to it: {others})" if others else "")
    return line


def missing_store(path: Path, source: str) -> str:
    """The one message for a store that does not exist: which path, from where, and the stores
    next to it with the command to look inside one (the demo's is ``.selfaug/lab.duckdb``)."""
    path = Path(path).resolve()
    text = f"No store at {path} (from {source}), so no datasets"
    found = sorted(p for p in path.parent.glob("*.duckdb") if p.is_file()) if path.parent.is_dir() else []
    if found:
        return (text + f"; other stores next to it: {other_stores(path)}"
                + f" (e.g. selfaug data ls --store {shown_path(found[0])})")
    return text + "; `selfaug data import FILE --dataset NAME` or `selfaug run RECIPE` creates it"

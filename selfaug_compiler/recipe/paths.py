"""Which files a recipe may name: files inside its project, unless the user opts in.

A recipe names other files: ``extends`` bases, data files, prompt and chat templates, a topics
file, custom benchmark files, lm-eval task files and include paths, a dataset folder saved with
``save_to_disk``. Each must resolve
(symlinks followed) inside the recipe's *project*: the nearest folder at or above the recipe's
own folder that holds ``.git``, ``pyproject.toml`` or ``.selfaug``, or, without such a folder,
the recipe's folder itself. Templates may also come from selfaug's own ``templates/`` folder.
An absolute path or a ``..`` that leaves the project is refused, so a recipe from elsewhere
cannot read (and feed into training data or error messages) files such as ``~/.ssh/id_rsa``.

The user, never the recipe, opts out: ``--allow-outside-paths`` on ``validate``, ``compile`` and
``run``, or ``SELFAUG_ALLOW_OUTSIDE_PATHS=1`` in the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "SELFAUG_ALLOW_OUTSIDE_PATHS"
FLAG = "--allow-outside-paths"
MARKERS = (".git", "pyproject.toml", ".selfaug")
SELFAUG_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"  # package data (pyproject.toml)


def allow_outside_paths(enabled: bool = True) -> None:
    """The command line's opt-in (``--allow-outside-paths``): recorded in the environment so
    every check, and any process the command starts, sees it."""
    if enabled:
        os.environ[ENV] = "1"


def outside_allowed() -> bool:
    return os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def project_root(recipe: Path) -> Path:
    """The folder a recipe's paths must stay in (see the module docstring)."""
    folder = recipe.resolve().parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in MARKERS):
            return candidate
    return folder


def is_inside(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(base) for base in (root.resolve(), SELFAUG_TEMPLATES))


def outside_project(path: Path, root: Path) -> bool:
    """True when ``path`` leaves the project and the user has not opted in."""
    return not outside_allowed() and not is_inside(path, root)


def outside_hint() -> str:
    return (f"copy the file into the project, or, if you trust this recipe, pass {FLAG} "
            f"(or set {ENV}=1)")

"""Prompt templates: finding them, rendering them (sandboxed jinja2, StrictUndefined), hashing them.

A template path from a recipe is looked up relative to the recipe folder first, then in the
repository's ``templates/`` folder (``prompts/self_dialogue.j2`` names a built-in template).
"""

from __future__ import annotations

from pathlib import Path

from selfaug_compiler.compile.templates import PROJECT_TEMPLATES as BUILTIN_TEMPLATES
from selfaug_compiler.compile.templates import sandboxed_environment
from selfaug_compiler.compile.templates import template_hash as file_template_hash
from selfaug_compiler.errors import SelfaugError

# Every template may use these (the same set `compile` checks templates with); a render call
# overrides what it knows. ``response`` defaults to ``gold``.
DEFAULT_VARIABLES = {"prompt": "", "gold": "", "answer": "", "topic": "", "turn": 0, "history": [], "turns": 1,
                     "system_prompt": "", "row": {}}


def builtin_templates_dir() -> Path:
    """selfaug's own templates (``selfaug_compiler/templates``, shipped as package data)."""
    return BUILTIN_TEMPLATES


def find_template(path: str | Path, recipe_dir: Path | None = None) -> Path:
    p = Path(path)
    candidates = [p] if p.is_absolute() else [c for c in ((recipe_dir / p) if recipe_dir else None,
                                                         builtin_templates_dir() / p) if c is not None]
    for c in candidates:
        if c.is_file():
            return c
    raise SelfaugError(f"prompt template {str(path)!r} not found", field="template",
                       expected="a jinja2 file relative to the recipe folder or in templates/",
                       found=", ".join(str(c) for c in candidates),
                       hint="built-in templates: " + ", ".join(
                           sorted(f"prompts/{f.name}" for f in (builtin_templates_dir() / "prompts").glob("*.j2"))))


def render(template_path: str | Path, *, recipe_dir: Path | None = None, **variables) -> str:
    """Render a template file with ``DEFAULT_VARIABLES`` updated by ``variables``; an unknown
    variable is an error (StrictUndefined)."""
    from jinja2 import TemplateError

    path = find_template(template_path, recipe_dir)
    variables = {**DEFAULT_VARIABLES, **variables}
    variables.setdefault("response", variables["gold"])
    try:
        return sandboxed_environment().from_string(path.read_text(encoding="utf-8")).render(**variables).strip()
    except TemplateError as exc:
        raise SelfaugError(f"cannot render prompt template {path}: {exc}", file=str(path),
                           expected="variables: " + ", ".join(sorted(variables)),
                           hint="the documented variables are listed in the comment at the top of each template") from exc


def template_hash(path: str | Path, recipe_dir: Path | None = None) -> str:
    """sha256 of the template file (goes into row provenance; the same hash the plan's ids use)."""
    return file_template_hash(find_template(path, recipe_dir))

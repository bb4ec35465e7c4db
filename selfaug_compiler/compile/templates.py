"""Prompt templates: where a recipe's template name points, its hash, and a test render.

A template name is looked up next to the recipe first, then in the project's ``templates/``
folder (``prompts/self_dialogue.j2`` -> ``templates/prompts/self_dialogue.j2``). Rendering uses a
sandboxed jinja2 environment with ``StrictUndefined``: a variable the executor does not pass is
an error at validate time, not a silent empty string at generation time.

Variables every prompt template receives (the generate/judge executors pass the same):
``prompt`` (the task prompt), ``gold`` and ``response`` (the gold response), ``answer`` (the
model's own answer: S3FT paraphrase/judge; the gold for others), ``topic`` (SA-SFT seed topic),
``turn`` (0-based index of the SA-SFT user turn being written), ``history`` (the dialogue so far,
a list of {"role", "content"}), ``turns`` (SA-SFT dialogue turns), ``system_prompt`` (the task's,
or ""), ``row`` (all source fields).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

PROJECT_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def resolve_template(name: str, recipe_dir: Path) -> Path | None:
    """The template file a recipe means, or None when it is nowhere."""
    for base in (recipe_dir, PROJECT_TEMPLATES):
        candidate = base / name
        if candidate.is_file():
            return candidate
    return None


def template_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def template_context(row: dict[str, Any], prompt_field: str, response_field: str, **extra: Any) -> dict[str, Any]:
    """The variables a template gets for one source row."""
    gold = str(row.get(response_field, ""))
    context = {
        "prompt": str(row.get(prompt_field, "")),
        "gold": gold,
        "response": gold,
        "answer": gold,
        "topic": "cooking",
        "turn": 0,
        "history": [],
        "turns": 1,
        "system_prompt": "",
        "row": row,
    }
    context.update(extra)
    return context


@lru_cache(maxsize=1)
def sandboxed_environment() -> Any:
    """The one jinja2 environment for prompt templates: validate and the steps render alike."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False,
                                trim_blocks=True, lstrip_blocks=True, autoescape=False)


def render_template(path: Path, context: dict[str, Any]) -> str:
    """Render with the sandbox; raises jinja2's errors (callers turn them into Problems)."""
    env = sandboxed_environment()
    return env.from_string(path.read_text(encoding="utf-8")).render(**context)

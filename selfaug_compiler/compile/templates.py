"""Prompt templates: where a recipe's template name points, its hash, and a test render.

A template name is looked up next to the recipe first, then in the project's ``templates/``
folder (``prompts/self_dialogue.j2`` -> ``templates/prompts/self_dialogue.j2``). Rendering uses
the bounded sandbox of ``sandbox.py`` (limits on values, output size and time) with
``StrictUndefined``: a variable the executor does not pass is an error at validate time, not a
silent empty string at generation time. A chat template (``model.chat_template``) is rendered
at validate too, in the same sandbox configured as transformers renders it.

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

from selfaug_compiler.recipe.paths import SELFAUG_TEMPLATES as PROJECT_TEMPLATES

SAMPLE_CHAT = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "2 + 3 = 5."}]


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
    """The one jinja2 environment for prompt templates: validate and the steps render alike.
    Bounded (``sandbox.GuardedEnvironment``): ``from_string(...).render(...)`` stops at the limits."""
    from selfaug_compiler.compile.sandbox import prompt_environment

    return prompt_environment()


def read_template(path: Path) -> str:
    """A template's text; a TemplateError (never the file's content) when it is not a template."""
    from selfaug_compiler.compile.sandbox import MAX_TEMPLATE_BYTES, TemplateFailed

    size = path.stat().st_size
    if size > MAX_TEMPLATE_BYTES:
        raise TemplateFailed(f"the file is {size:,} bytes; a template may have {MAX_TEMPLATE_BYTES:,}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateFailed(f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}; a binary file?)") from None
    if "\x00" in text:
        raise TemplateFailed("the file holds NUL bytes (a binary file?)")
    return text


def render_template(path: Path, context: dict[str, Any]) -> str:
    """Render with the sandbox; raises jinja2's errors (callers turn them into Problems)."""
    return sandboxed_environment().from_string(read_template(path)).render(**context)


def render_chat_template(path: Path, system_prompt: str | None = None) -> str:
    """Render a chat template on a sample conversation, as the train and generate steps will."""
    from selfaug_compiler.compile.sandbox import chat_environment

    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + SAMPLE_CHAT
    template = chat_environment().from_string(read_template(path))
    out = ""
    for generation_prompt in (False, True):
        out = template.render(messages=messages[:-1] if generation_prompt else messages, bos_token="<s>",
                              eos_token="</s>", add_generation_prompt=generation_prompt)
    return out


def template_error_text(exc: BaseException) -> str:
    """A template error for a message: jinja2's own text without the source line it quotes."""
    line = getattr(exc, "lineno", None)
    text = getattr(exc, "message", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"line {line}: {text}" if line else text

"""Chat or completion style: the one decision of how every model use formats its text (no torch).

``model.prompt_format`` in a recipe (``chat``, the default, or ``completion``) reaches every step
in its ``params["model"]["spec"]``; ``models/loading.py`` records it on the loaded tokenizer
(``selfaug_prompt_format``), and the generation engine, the training formatter, the evaluation
scorers and the KL diagnostic all ask ``uses_chat(tokenizer)`` here. Nothing falls back to raw text
because a template is missing: a chat-style model without a chat template is an error
(``validate`` refuses it first, ``compile/checks.py``).

Completion style (a base model, as TRL's non-conversational prompt/completion and lm-eval without
``--apply_chat_template``): the text the model sees is ``completion_prompt``:

    [system prompt + "\\n\\n"] + prompt + "\\n"

and, in training, the response follows with the tokenizer's EOS token; the loss is on the response
tokens and the EOS only. Generation stops at EOS (or ``max_new_tokens``).
"""

from __future__ import annotations

import hashlib
from typing import Any

CHAT, COMPLETION = "chat", "completion"
SYSTEM_SEPARATOR = "\n\n"  # after a system prompt
PROMPT_SEPARATOR = "\n"  # between the prompt and the response
ATTR = "selfaug_prompt_format"  # set on the tokenizer by models/loading.py


def prompt_format(spec: dict[str, Any] | None) -> str:
    """The format a step's model spec declares (``chat`` when absent: the default stays out of ids)."""
    return str((spec or {}).get("prompt_format") or CHAT)


def completion_prompt(prompt: str | list[dict], system: str | None = None) -> str:
    """The raw text a completion-style model gets for one prompt (a string or one user turn with an
    optional system turn before it)."""
    if not isinstance(prompt, str):
        roles = [m.get("role") for m in prompt]
        if roles not in (["user"], ["system", "user"]):
            from selfaug_compiler.errors import SelfaugError

            raise SelfaugError("a completion-style model (model.prompt_format: completion) got a conversation "
                               f"with turns {roles}", field="model.prompt_format",
                               expected="one prompt (optionally after a system prompt)",
                               hint="use single-turn data, or set model.prompt_format: chat with a chat template")
        system = prompt[0]["content"] if roles[0] == "system" else system
        prompt = prompt[-1]["content"]
    return (system + SYSTEM_SEPARATOR if system else "") + prompt + PROMPT_SEPARATOR


def mark(tokenizer: Any, fmt: str) -> Any:
    setattr(tokenizer, ATTR, fmt)
    return tokenizer


def uses_chat(tokenizer: Any) -> bool:
    """True for a chat-style model (its chat template renders prompts), False for a completion-style
    one. A chat-style tokenizer without a template is an error, never raw text."""
    if getattr(tokenizer, ATTR, CHAT) == COMPLETION:
        return False
    if not getattr(tokenizer, "chat_template", None):
        from selfaug_compiler.errors import SelfaugError

        raise SelfaugError("the model's tokenizer has no chat template", field="model.chat_template",
                           expected="a chat template, or a completion-style base model",
                           hint="set model.chat_template (chatml or a jinja file), or model.prompt_format: completion")
    return True


def template_id(tokenizer: Any) -> str:
    """What generated rows record of the chat template used: ``sha256:<hex>`` of the template text,
    or ``none`` for a completion-style model."""
    if getattr(tokenizer, ATTR, CHAT) == COMPLETION:
        return "none"
    text = getattr(tokenizer, "chat_template", None)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest() if isinstance(text, str) and text else "missing"


def row_template(loaded: Any) -> str:
    """``template_id`` of a loaded model, or for a served backend (no tokenizer here): ``none`` in
    completion style, else ``server:<kind>`` (the server applies its own template)."""
    tokenizer = getattr(loaded, "tokenizer", None)
    if tokenizer is not None:
        return template_id(tokenizer)
    if getattr(loaded, "prompt_format", CHAT) == COMPLETION:
        return "none"
    own = getattr(loaded, "chat_template", None)  # the vllm backend given model.chat_template's text
    if isinstance(own, str) and own:
        return "sha256:" + hashlib.sha256(own.encode("utf-8")).hexdigest()
    return f"server:{getattr(loaded, 'kind', 'unknown')}"

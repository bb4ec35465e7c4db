"""validate's checks of ``model.prompt_format`` (``models/completion.py``): what a completion-style
base model cannot do is refused before anything runs, each with the field and the fix.

Completion style (``model.prompt_format: completion``) refuses: a ``model.chat_template`` (it would
be ignored), an ``openai`` backend in ``chat`` mode (the server would apply a template), SA-SFT
(self-dialogues are conversations), multi-turn task data (``messages``/ShareGPT/conversational
prompt-completion rows with more than one user turn), and benchmark settings that ask for the chat
template (``eval.packaged.NAME.chat_template: true``, ``eval.lm_eval.tasks.NAME.apply_chat_template``).
It warns where an S3FT/SDFT generation has no stop strings (``augment.*.stop``), or generated
benchmarks have none (``eval.stop``): a base model seldom ends with EOS. Chat style refuses an ``openai`` backend in ``completions`` mode (raw text to a chat model: the
silent fallback issue 11 was about). Standard library only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfaug_compiler.models.completion import COMPLETION

FIX = "set model.prompt_format: chat and give the model a chat template (model.chat_template: chatml or a jinja file)"
CONVERSATION_SHAPES = ("messages", "sharegpt", "prompt_completion")


def check_prompt_format(checker: Any, stages: list[Any], sources: list[Any]) -> None:
    recipe = checker.recipe
    models = [(("model",), recipe.model)]
    for i, stage in enumerate(stages):
        judge = getattr(stage.augment, "judge", None)
        if getattr(judge, "model", None) is not None:
            models.append((checker.augment_path(i) + ("judge", "model"), judge.model))
    for at, spec in models:
        _check_backend_mode(checker, at, spec)
    checker.report.prompting = describe(recipe.model)
    if recipe.model.prompt_format != COMPLETION:
        return
    if recipe.model.chat_template:
        checker.add(("model", "chat_template"), "a completion-style model (model.prompt_format: completion) "
                    "takes no chat template", found=recipe.model.chat_template,
                    hint="remove model.chat_template, or set model.prompt_format: chat to use it")
    for i, stage in enumerate(stages):
        if stage.augment is not None and stage.augment.method == "sa_sft":
            checker.add(checker.augment_path(i) + ("method",), "SA-SFT's self-dialogues are conversations; a "
                        "completion-style model (model.prompt_format: completion) has no chat turns",
                        found="sa_sft", expected="s3ft, sdft, replay or none", hint=f"choose another method, or {FIX}")
        _check_stop_strings(checker, stage.augment, checker.augment_path(i))
        source = sources[i] if i < len(sources) else None
        _check_rows(checker, stage.task, source.rows if source is not None else [], checker.task_path(i),
                    _data_file(checker, stage.task))
    _check_benchmarks(checker, recipe.eval)


def _check_stop_strings(checker: Any, augment: Any, at: tuple[Any, ...]) -> None:
    """A warning per generation without stop strings: a base model seldom ends its reply with EOS,
    so every reply may run to max_new_tokens and be refused as cut off."""
    samplings = {"s3ft": ("answer", "paraphrase"), "sdft": ("sampling",)}.get(getattr(augment, "method", ""), ())
    for name in samplings:
        if getattr(augment, name).stop is None:
            checker.add(at + (name, "stop"), "a completion-style base model seldom ends its reply with EOS: without "
                        "stop strings its replies may all run to max_new_tokens and be refused as cut off",
                        severity="warning", expected="stop strings where a reply ends, e.g. ['\\n\\n']",
                        hint=f"set {'.'.join(map(str, at + (name, 'stop')))}: [\"\\n\\n\"] (or accept_truncated: true)")


def describe(spec: Any) -> str:
    """What validate's ok line says of the formatting, before anything runs."""
    if spec.prompt_format == COMPLETION:
        return "completion-style: raw prompt text, no chat template"
    return f"chat template: {spec.chat_template}" if spec.chat_template else "chat template: the tokenizer's"


def _check_backend_mode(checker: Any, at: tuple[Any, ...], spec: Any) -> None:
    if spec.backend.kind != "openai":
        return
    if spec.prompt_format == COMPLETION and spec.backend.mode == "chat":
        checker.add(at + ("backend", "mode"), "a completion-style model is asked through /completions; chat mode "
                    "would make the server apply a chat template", found="chat", expected="completions",
                    hint="set backend.mode: completions (or prompt_format: chat for a model with a chat template)")
    elif spec.prompt_format != COMPLETION and spec.backend.mode == "completions":
        checker.add(at + ("backend", "mode"), "completions mode sends raw text, but the model is chat-style "
                    "(prompt_format: chat)", found="completions", expected="chat",
                    hint="set backend.mode: chat, or declare a base model with prompt_format: completion")


def _data_file(checker: Any, task: Any) -> Path | None:
    path = getattr(task.source, "path", None)
    return checker.loaded.base_dir / path if getattr(task.source, "kind", None) == "file" else None


def _check_rows(checker: Any, task: Any, rows: list[dict[str, Any]], at: tuple[Any, ...], path: Path | None) -> None:
    from selfaug_compiler.compile.shape_checks import _line, task_shape
    from selfaug_compiler.data import shapes

    if not rows:
        return
    shape = task_shape(task, sorted({k for r in rows for k in r}))
    if shape not in CONVERSATION_SHAPES:
        return
    for i, row in enumerate(rows):
        if shape == "prompt_completion":
            if not shapes.is_conversation_value(row.get("prompt")):
                return  # plain strings: one prompt, one completion
            value: Any = {"prompt": row.get("prompt"), "completion": row.get("completion")}
        else:
            value = row.get(shapes.SHAPE_COLUMNS[shape][0])
        try:
            turns = shapes.conversation(value, shape)
        except shapes.ShapeError:
            return  # the shape checks report it
        users = sum(1 for t in turns if t["role"] == "user")
        if users > 1 or sum(1 for t in turns if t["role"] == "assistant") > 1:
            line = _line(path, i)
            where = (f"{path.name}: " if path is not None else "") + (f"line {line}" if line else f"row {i + 1}")
            checker.add(at + ("format",), f"{where}: a conversation of {len(turns)} turns ({shape}); a "
                        "completion-style model (model.prompt_format: completion) trains on one prompt and one "
                        "response", expected="single-turn rows (an optional system prompt, one user turn, one reply)",
                        hint=f"keep single-turn rows, or {FIX}")
            return


def _check_benchmarks(checker: Any, spec: Any) -> None:
    from selfaug_compiler.evaluate.catalog import generates_replies

    custom = {c.name: c.type for c in spec.custom}
    generated = [name for name in [*spec.in_domain, *spec.retention] if generates_replies(name, custom)]
    if generated and not spec.stop:
        checker.add(("eval", "stop"), "a completion-style base model runs on past its answer (the next \"Question:\", "
                    f"more text) until max_new_tokens: {', '.join(generated)} would score those run-on replies, the "
                    "base model's \"before\" included", severity="warning",
                    expected="stop strings where a reply ends, e.g. ['\\n\\n', 'Question:']",
                    hint="set eval.stop: [\"\\n\\n\"] (lm_eval tasks keep their own `until`)")
    for name, settings in spec.packaged.items():
        if settings.chat_template:
            checker.add(("eval", "packaged", name, "chat_template"), f"`{name}` asks for the chat template of a "
                        "completion-style model", found="true", hint="remove chat_template (raw prompts, as lm_eval "
                        f"without --apply_chat_template), or {FIX}")
    for name, settings in spec.lm_eval.tasks.items():
        if settings.apply_chat_template:
            checker.add(("eval", "lm_eval", "tasks", name, "apply_chat_template"), f"`{name}` asks for the chat "
                        "template of a completion-style model", found="true",
                        hint=f"set apply_chat_template: false, or {FIX}")

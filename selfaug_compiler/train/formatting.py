"""Training rows -> token ids and labels: chat template, response-only loss, truncation, packing.

A row is either ``prompt``/``response`` (one user turn, one assistant turn) or ``messages`` (a
JSON list of ``{role, content}``; ``assistant_turns="all"`` trains on every assistant turn,
``"last"`` on the final one only, the earlier turns then being context like the user's). The tokenizer's chat
template renders the conversation; the text is cut into segments at the assistant turns and each
segment is tokenized on its own (as at inference, where the prompt is tokenized up to the
generation prompt and the reply is produced token by token). Labels are the token ids on
assistant segments and -100 elsewhere.

An assistant segment is the assistant's text plus its end-of-turn marker: it starts where the
template's generation prompt ends and stops where the rendered turn ends, minus trailing
whitespace (ChatML's newline after ``<|im_end|>`` is not a target; the ``<|im_end|>`` is). This
needs a template that renders conversations prefix-stably (rendering the first k messages gives
a prefix of rendering them all), which holds for the usual templates; if not, a clear error.

A completion-style model (``model.prompt_format: completion``, no chat template) trains on
``completion_prompt`` + response + EOS instead (``tokenize_completion``).

Truncation keeps the start (system + prompt) and cuts the end (response side) at ``max_length``;
an example with no target token left is dropped and counted.

Packing concatenates whole examples (never split) greedily, in order, into blocks of at most
``max_length`` tokens, with ``position_ids`` restarting at 0 for each example. Given position ids
and no attention mask, transformers builds a block-diagonal causal mask, so an example attends
only to itself: packing changes padding and batch composition, not what each token sees. (With an
attention implementation that ignores packed position ids, tokens would also attend to earlier
examples in the block; labels never cross examples either way.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from selfaug_compiler.errors import SelfaugError

IGNORE = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int] | None = None  # only for packed blocks

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def target_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


@dataclass
class FormatStats:
    rows: int = 0
    examples: int = 0
    truncated: int = 0
    dropped: int = 0  # no target token left after truncation (or an empty response)
    reasons: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def row_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation of a training row: its ``messages`` if present, else prompt + response."""
    messages = row.get("messages")
    if isinstance(messages, str) and messages.strip():
        messages = json.loads(messages)
    if messages:
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    prompt, response = row.get("prompt"), row.get("response")
    if prompt is None or response is None:
        raise SelfaugError(
            "a training row has neither `messages` nor both `prompt` and `response`",
            field="training rows",
            expected="prompt/response columns, or messages (JSON list of {role, content})",
            found=", ".join(sorted(k for k, v in row.items() if v is not None)) or "an empty row",
        )
    return [{"role": "user", "content": str(prompt)}, {"role": "assistant", "content": str(response)}]


def _render(tokenizer: Any, messages: list[dict], *, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer: Any, messages: list[dict], assistant_turns: str = "all") -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns (``last``: the
    final assistant turn's only)."""
    full = _render(tokenizer, messages, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        upto = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (full.startswith(upto) and upto.startswith(before)):
            raise SelfaugError(
                "the chat template does not render conversations prefix-stably, so assistant turns "
                "cannot be located for response-only loss",
                field="model.chat_template",
                expected="a template where rendering the first k messages is a prefix of rendering all",
                found=f"turn {i} ({message['role']}) renders differently inside the full conversation",
                hint="set model.chat_template to a standard template (e.g. ChatML)",
            )
        end = len(upto.rstrip())
        if end > len(before):
            spans.append((len(before), end))
    return full, spans[-1:] if assistant_turns == "last" else spans


def _segments(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is_target) segments."""
    pieces: list[tuple[str, bool]] = []
    cursor = 0
    for start, end in spans:
        if start > cursor:
            pieces.append((text[cursor:start], False))
        pieces.append((text[start:end], True))
        cursor = end
    if cursor < len(text):
        pieces.append((text[cursor:], False))
    return pieces


def tokenize_conversation(tokenizer: Any, messages: list[dict], assistant_turns: str = "all") -> Example:
    text, spans = assistant_spans(tokenizer, messages, assistant_turns)
    pieces = _segments(text, spans)
    encoded = tokenizer([p for p, _ in pieces], add_special_tokens=False)["input_ids"]
    input_ids: list[int] = []
    labels: list[int] = []
    for ids, (_, is_target) in zip(encoded, pieces):
        input_ids.extend(ids)
        labels.extend(ids if is_target else [IGNORE] * len(ids))
    return Example(input_ids, labels)


def tokenize_completion(tokenizer: Any, messages: list[dict]) -> Example:
    """A completion-style example (``models/completion.py``): ``completion_prompt`` (system prompt,
    prompt, newline) tokenized as the engine does at inference, then the response and the EOS
    token; labels on the response and EOS only. One prompt and one response: a multi-turn
    conversation is an error (``validate`` refuses such data for a completion-style model)."""
    from selfaug_compiler.models.completion import completion_prompt

    roles = [m["role"] for m in messages]
    if roles not in (["user", "assistant"], ["system", "user", "assistant"]):
        raise SelfaugError("a completion-style model (model.prompt_format: completion) trains on one prompt and "
                           f"one response; a row has turns {roles}", field="model.prompt_format",
                           expected="prompt/response rows (optionally with a system prompt)",
                           hint="use single-turn data, or set model.prompt_format: chat with a chat template")
    prompt_ids = tokenizer(completion_prompt(messages[:-1]))["input_ids"]
    response_ids = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
    if response_ids and tokenizer.eos_token_id is not None:
        response_ids = response_ids + [int(tokenizer.eos_token_id)]
    return Example(prompt_ids + response_ids, [IGNORE] * len(prompt_ids) + response_ids)


def tokenize_row(tokenizer: Any, messages: list[dict], assistant_turns: str = "all") -> Example:
    """The model's declared format decides (``models/completion.uses_chat``): chat template or completion text."""
    from selfaug_compiler.models.completion import uses_chat

    if uses_chat(tokenizer):
        return tokenize_conversation(tokenizer, messages, assistant_turns)
    return tokenize_completion(tokenizer, messages)


def format_rows(tokenizer: Any, rows: Iterable[dict[str, Any]], max_length: int,
                assistant_turns: str = "all") -> tuple[list[Example], FormatStats]:
    """Tokenize rows with response-only labels (``assistant_turns``: all or last), truncating the
    response side to ``max_length``."""
    stats = FormatStats()
    examples: list[Example] = []
    for row in rows:
        stats.rows += 1
        example = tokenize_row(tokenizer, row_messages(row), assistant_turns)
        if len(example) > max_length:
            stats.truncated += 1
            example = Example(example.input_ids[:max_length], example.labels[:max_length])
        if example.target_tokens == 0:
            stats.drop("no response token within max_length" if len(example) == max_length else "empty response")
            continue
        examples.append(example)
    stats.examples = len(examples)
    return examples, stats


def pack_examples(examples: list[Example], max_length: int) -> list[Example]:
    """Greedy in-order packing of whole examples into blocks of at most ``max_length`` tokens."""
    blocks: list[Example] = []
    current = Example([], [], [])
    for example in examples:
        if current.input_ids and len(current) + len(example) > max_length:
            blocks.append(current)
            current = Example([], [], [])
        current.input_ids.extend(example.input_ids)
        # The first token of an example is never predicted from the previous example's last one.
        current.labels.extend([IGNORE] + example.labels[1:] if current.labels else example.labels)
        assert current.position_ids is not None
        current.position_ids.extend(range(len(example)))
    if current.input_ids:
        blocks.append(current)
    return blocks

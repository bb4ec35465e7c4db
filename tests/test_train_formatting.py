"""Chat-template formatting: response-only labels, truncation, packing."""

from __future__ import annotations

import json

import pytest

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.train.formatting import IGNORE, format_rows, pack_examples, row_messages, tokenize_conversation
from selfaug_compiler.train.tiny import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def labelled_spans(example) -> list[list[int]]:
    """Maximal runs of labelled token ids."""
    spans, current = [], []
    for token, label in zip(example.input_ids, example.labels):
        if label != IGNORE:
            assert label == token
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return spans


def test_prompt_response_mask_covers_exactly_the_answer_and_end_of_turn(tok):
    row = {"prompt": "What is 2 plus 3?", "response": "The answer is 5."}
    example = tokenize_conversation(tok, row_messages(row))
    spans = labelled_spans(example)
    assert len(spans) == 1
    assert tok.decode(spans[0]) == "The answer is 5.<|im_end|>"
    full = tok.decode(example.input_ids)
    assert full == tok.apply_chat_template(row_messages(row), tokenize=False)
    # everything before the answer (prompt + generation prompt) and the trailing newline: no loss
    first = example.labels.index(spans[0][0])
    assert tok.decode(example.input_ids[:first]).endswith("<|im_start|>assistant\n")
    assert all(label == IGNORE for label in example.labels[:first])
    assert example.labels[-1] == IGNORE and tok.decode(example.input_ids[-1:]) == "\n"


def test_multi_turn_messages_train_on_every_assistant_turn(tok):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hello world"},
        {"role": "user", "content": "What is 4 plus 4?"},
        {"role": "assistant", "content": "It is 8."},
    ]
    example = tokenize_conversation(tok, row_messages({"messages": json.dumps(messages)}))
    decoded = [tok.decode(span) for span in labelled_spans(example)]
    assert decoded == ["hello world<|im_end|>", "It is 8.<|im_end|>"]
    assert example.target_tokens == sum(len(s) for s in labelled_spans(example))


def test_truncation_cuts_the_response_side_and_drops_examples_without_response(tok):
    rows = [
        {"prompt": "What is 2 plus 3?", "response": "The answer is five, because two plus three is five."},
        {"prompt": "hello " * 40, "response": "hi"},
    ]
    full = tokenize_conversation(tok, row_messages(rows[0]))
    prompt_len = full.labels.index(next(label for label in full.labels if label != IGNORE))
    max_length = prompt_len + 3
    examples, stats = format_rows(tok, rows, max_length)
    assert stats.rows == 2 and stats.examples == 1 and stats.dropped == 1 and stats.truncated == 2
    kept = examples[0]
    assert len(kept) == max_length
    assert kept.input_ids == full.input_ids[:max_length]  # the prompt survives whole
    assert kept.target_tokens == 3


def test_packing_keeps_whole_examples_and_restarts_positions(tok):
    rows = [{"prompt": f"What is {i} plus 1?", "response": f"It is {i + 1}."} for i in range(9)]
    examples, _ = format_rows(tok, rows, 64)
    blocks = pack_examples(examples, 64)
    assert len(blocks) < len(examples)
    assert all(len(b) <= 64 for b in blocks)
    assert sum(len(b) for b in blocks) == sum(len(e) for e in examples)
    flat_ids = [t for b in blocks for t in b.input_ids]
    assert flat_ids == [t for e in examples for t in e.input_ids]
    # positions restart at each example; labels never cross an example boundary
    starts = [i for b in blocks for i, p in enumerate(b.position_ids) if p == 0]
    assert len(starts) == len(examples)
    for block in blocks:
        for i, p in enumerate(block.position_ids):
            if p == 0:
                assert block.labels[i] == IGNORE
    assert sum(b.target_tokens for b in blocks) == sum(e.target_tokens for e in examples)


def test_row_without_payload_is_a_user_error(tok):
    with pytest.raises(SelfaugError, match="neither `messages` nor both"):
        format_rows(tok, [{"prompt": "x", "response": None}], 64)


def test_template_that_is_not_prefix_stable_is_reported(tok):
    tok = build_tiny_tokenizer()
    # renders the *last* message differently from earlier ones
    tok.chat_template = (
        "{% for m in messages %}{% if loop.last %}[LAST]{% endif %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    with pytest.raises(SelfaugError, match="prefix-stably"):
        tokenize_conversation(tok, messages)

"""An export is what selfaug trains on: TRL's own SFT dataset preparation (SFTTrainer, trl 1.16)
on `selfaug data export --format messages|trl` gives the token ids and loss mask of
selfaug's formatting (train/formatting.py) on a tiny tokenizer with a chat template."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from selfaug_compiler.cli import main  # noqa: E402
from selfaug_compiler.data.sources import load_rows  # noqa: E402
from selfaug_compiler.store import open_store  # noqa: E402
from selfaug_compiler.train.formatting import IGNORE, format_rows  # noqa: E402
from selfaug_compiler.train.step import training_rows  # noqa: E402

# ChatML as SmolLM2 renders it, with TRL's generation markers around each assistant reply and its
# end-of-turn token (the markers do not change the rendered text).
CHATML_MARKED = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHAT = [
    {"id": "a", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                             {"role": "user", "content": "What is two plus three?"},
                             {"role": "assistant", "content": "Two plus three is five."},
                             {"role": "user", "content": "And 48 / 2?"},
                             {"role": "assistant", "content": "The answer is 24."}]},
    {"id": "b", "messages": [{"role": "user", "content": "Natalia sold clips to 48 of her friends in April."},
                             {"role": "assistant", "content": "Then she sold 24 in May, 72 in all."}]},
    {"id": "c", "question": "What is 1 + 2?", "answer": "It is 3."},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from selfaug_compiler.train.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = CHATML_MARKED
    return folder, tok


def exported(tmp_path, capsys, fmt: str, system_prompt: str) -> tuple[list[dict], list[dict]]:
    """(the rows selfaug's train step reads from the version, the exported records)."""
    store = str(tmp_path / "s.duckdb")
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in CHAT[:2]))
    qa = tmp_path / "q.jsonl"
    qa.write_text(json.dumps(CHAT[2]) + "\n")
    import pyarrow as pa

    with open_store(store) as s:
        table = pa.concat_tables([load_rows(str(src), key_field="id"), load_rows(str(qa), key_field="id")])
        v = s.commit("mix", table)
        rows = training_rows(s.read(v), system_prompt)
    out = tmp_path / f"{fmt}.jsonl"
    assert main(["data", "export", v.ref, "--format", fmt, "-o", str(out), "--store", store,
                 "--system-prompt", system_prompt]) == 0
    capsys.readouterr()
    return rows, [json.loads(line) for line in out.read_text().splitlines()]


def trl_prepared(model_folder, tok, records: list[dict], tmp_path, **config):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], max_length=None, packing=False,
                     dataset_num_proc=None, use_cpu=True, **config)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_folder), args=args,
                         train_dataset=Dataset.from_list(records), processing_class=tok)
    return list(trainer.train_dataset)


def selfaug_examples(tok, rows, assistant_turns):
    examples, stats = format_rows(tok, rows, 10_000, assistant_turns)
    assert stats.dropped == 0
    return examples


def trl_labels(example: dict) -> list[int]:
    if "labels" in example:
        return example["labels"]
    mask = example.get("assistant_masks") or example.get("completion_mask")
    return [t if m else IGNORE for t, m in zip(example["input_ids"], mask)]


def test_messages_export_with_assistant_only_loss_equals_selfaug_all_turns(tiny, tmp_path, capsys):
    folder, tok = tiny
    rows, records = exported(tmp_path, capsys, "messages", "Answer briefly.")
    assert records[0]["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert records[1]["messages"][0] == {"role": "system", "content": "Answer briefly."}  # the task's
    prepared = trl_prepared(folder, tok, records, tmp_path, assistant_only_loss=True)
    ours = selfaug_examples(tok, rows, "all")
    assert len(prepared) == len(ours) == 3
    for theirs, mine in zip(prepared, ours):
        assert theirs["input_ids"] == mine.input_ids
        assert trl_labels(theirs) == mine.labels
    assert sum(1 for e in ours[0].labels if e != IGNORE) > sum(1 for e in selfaug_examples(tok, rows, "last")[0].labels
                                                               if e != IGNORE)


def test_trl_prompt_completion_export_equals_selfaug_last_turn_up_to_the_newline(tiny, tmp_path, capsys):
    """TRL's completion mask on conversational prompt/completion covers everything after the
    generation prompt; selfaug's target stops at the end-of-turn token (the newline after it is
    not a target). Token ids are equal; the masks differ by exactly that final newline."""
    folder, tok = tiny
    rows, records = exported(tmp_path, capsys, "trl", "Answer briefly.")
    prepared = trl_prepared(folder, tok, records, tmp_path, completion_only_loss=True)
    ours = selfaug_examples(tok, rows, "last")
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    for theirs, mine in zip(prepared, ours):
        assert theirs["input_ids"] == mine.input_ids
        labels = trl_labels(theirs)
        assert labels[-len(newline):] == newline and mine.labels[-len(newline):] == [IGNORE] * len(newline)
        assert labels[:-len(newline)] == mine.labels[:-len(newline)]


def test_completion_style_trl_export_equals_selfaug_completion_formatting(tiny, tmp_path, capsys):
    """A completion-style training set (model.prompt_format: completion) exported with --format trl
    --prompt-format completion is TRL's plain prompt/completion; TRL's preparation with
    completion_only_loss gives exactly selfaug's token ids and loss mask (prompt text + newline,
    reply + EOS, loss on the reply and EOS)."""
    from transformers import AutoTokenizer

    from selfaug_compiler.models.completion import mark

    folder, _ = tiny
    tok = mark(AutoTokenizer.from_pretrained(folder), "completion")
    tok.chat_template = None
    store = str(tmp_path / "s.duckdb")
    src = tmp_path / "q.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "question": q, "answer": a}) + "\n"
                           for i, (q, a) in enumerate([("What is 1 + 2?", "It is 3."), ("Name a colour.", "Blue.")])))
    with open_store(store) as s:
        v = s.commit("mix", load_rows(str(src), key_field="id"))
        rows = training_rows(s.read(v), "Be brief.")
    out = tmp_path / "c.jsonl"
    assert main(["data", "export", v.ref, "--format", "trl", "--prompt-format", "completion", "-o", str(out),
                 "--store", store, "--system-prompt", "Be brief."]) == 0
    capsys.readouterr()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0] == {"prompt": "Be brief.\n\nWhat is 1 + 2?\n", "completion": "It is 3."}
    prepared = trl_prepared(folder, tok, records, tmp_path, completion_only_loss=True)
    ours = selfaug_examples(tok, rows, "last")
    assert len(prepared) == len(ours) == 2
    for theirs, mine in zip(prepared, ours):
        assert theirs["input_ids"] == mine.input_ids and mine.input_ids[-1] == tok.eos_token_id
        assert trl_labels(theirs) == mine.labels

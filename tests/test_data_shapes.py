"""Input shapes (data/shapes.py): detection, override, errors with the line, keys, diff and
export of conversation rows (data/export.py), and which assistant turns carry the loss."""

from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq
import pytest

from selfaug_compiler.cli import main
from selfaug_compiler.data.sources import SourceSpec, load_rows
from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.store import open_store

CHAT = [
    {"id": "a", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                             {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "2+2?"},
                             {"role": "assistant", "content": "4"}]},
    {"id": "b", "messages": [{"role": "user", "content": "Name a color"}, {"role": "assistant", "content": "Blue"}],
     "topic": "colors"},
]
SHAREGPT = [
    {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}]},
    {"conversations": [{"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"},
                       {"from": "human", "value": "Q3"}, {"from": "gpt", "value": "A3"}]},
]


def write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def messages_of(table) -> list[list[dict]]:
    return [json.loads(m) for m in table["messages"].to_pylist()]


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_messages_are_detected_and_kept_whole_with_the_system_prompt(tmp_path):
    table = load_rows(write(tmp_path / "c.jsonl", CHAT))
    assert messages_of(table) == [r["messages"] for r in CHAT]
    assert table["prompt"].to_pylist() == [None, None] and table["response"].to_pylist() == [None, None]
    assert json.loads(table["meta"][1].as_py())["topic"] == "colors"


def test_sharegpt_roles_become_chat_roles(tmp_path):
    table = load_rows(write(tmp_path / "s.jsonl", SHAREGPT))
    first, second = messages_of(table)
    assert first == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
                     {"role": "assistant", "content": "A1"}]
    assert [m["role"] for m in second] == ["user", "assistant", "user", "assistant"]


def test_trl_prompt_completion_plain_and_conversational(tmp_path):
    plain = load_rows(write(tmp_path / "p.jsonl", [{"prompt": "The sky is", "completion": " blue."}]))
    assert (plain["prompt"][0].as_py(), plain["response"][0].as_py(), plain["messages"][0].as_py()) == \
        ("The sky is", " blue.", None)
    conv = load_rows(write(tmp_path / "c.jsonl", [{"prompt": [{"role": "system", "content": "S"},
                                                              {"role": "user", "content": "Q"}],
                                                   "completion": [{"role": "assistant", "content": "A"}]}]))
    assert messages_of(conv) == [[{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                                  {"role": "assistant", "content": "A"}]]


def test_alpaca_input_goes_into_the_prompt(tmp_path):
    table = load_rows(write(tmp_path / "a.jsonl", [{"instruction": "Translate to English", "input": "chat", "output": "cat"},
                                                  {"instruction": "Say hi", "input": "", "output": "hi"}]))
    assert table["prompt"].to_pylist() == ["Translate to English\n\nchat", "Say hi"]
    assert table["response"].to_pylist() == ["cat", "hi"]
    assert table["meta"].to_pylist() == [None, None]  # input is not moved aside any more


def test_prompt_response_is_unchanged(tmp_path):
    table = load_rows(write(tmp_path / "q.jsonl", [{"question": "1+1?", "answer": "2"}]))
    assert (table["prompt"][0].as_py(), table["response"][0].as_py(), table["messages"][0].as_py()) == ("1+1?", "2", None)


def test_explicit_shape_that_does_not_fit_names_the_option_and_the_shapes(tmp_path):
    with pytest.raises(SelfaugError) as err:
        load_rows(SourceSpec(write(tmp_path / "c.jsonl", CHAT), format="sharegpt", format_option="task.format"))
    problem = err.value.problems[0]
    assert problem.field == "task.format" and "conversations" in problem.message
    assert "messages" in problem.found and "sharegpt" in problem.hint


@pytest.mark.parametrize("bad, said", [
    ([{"role": "user", "content": "Q"}], "no assistant turn"),
    ([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}, {"role": "user", "content": "Q2"}],
     "ends with a user turn"),
    ([{"role": "user", "content": "Q"}, {"role": "tool", "content": "x"}, {"role": "assistant", "content": "A"}],
     "role 'tool'"),
    ([{"role": "user", "content": "Q"}, {"role": "system", "content": "S"}, {"role": "assistant", "content": "A"}],
     "system turn after the first"),
    ([{"role": "user"}, {"role": "assistant", "content": "A"}], "no text `content`"),
])
def test_a_bad_conversation_is_refused_with_its_line_and_the_fix(tmp_path, bad, said):
    path = write(tmp_path / "c.jsonl", [CHAT[1], {"messages": bad}])
    with pytest.raises(SelfaugError) as err:
        load_rows(path)
    problem = err.value.problems[0]
    assert problem.location.line == 2 and problem.location.file == path
    assert said in problem.message and problem.field == "messages" and problem.hint


def test_cli_import_shape_override_and_error_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SELFAUG_STORE", raising=False)
    store = str(tmp_path / "s.duckdb")
    path = write(tmp_path / "s.jsonl", SHAREGPT)
    code, _, err = run(capsys, "data", "import", path, "--dataset", "d", "--shape", "messages", "--store", store)
    assert code == 2 and "--shape" in err and "conversations" in err and "Traceback" not in err
    assert run(capsys, "data", "import", path, "--dataset", "d", "--shape", "sharegpt", "--store", store)[0] == 0
    code, _, err = run(capsys, "data", "import", path, "--dataset", "d", "--shape", "chatml", "--store", store)
    assert code == 2 and "sharegpt" in err


def test_conversation_keys_and_diff(tmp_path):
    """Without an id column a conversation's key is sha256 of its stored JSON: the same
    conversation keeps its key across files; a changed reply is a modified row, not a new one."""
    rows = [{"messages": r["messages"]} for r in CHAT]
    with open_store(tmp_path / "s.duckdb") as s:
        v1 = s.commit("chat", load_rows(write(tmp_path / "a.jsonl", rows)))
        keyed = s.commit("keyed", load_rows(write(tmp_path / "k.jsonl", CHAT), key_field="id"))
        table = s.read(v1)
        stored = table["messages"].to_pylist()
        assert sorted(table["key"].to_pylist()) == sorted(hashlib.sha256(m.encode()).hexdigest() for m in stored)
        assert sorted(s.read(keyed)["key"].to_pylist()) == ["a", "b"]
        changed = json.loads(json.dumps(CHAT))
        changed[0]["messages"][-1]["content"] = "four"
        v3 = s.commit("chat", load_rows(write(tmp_path / "c.jsonl", [{"messages": r["messages"]} for r in changed])))
        d = s.diff(v1, v3)
        assert (d.added, d.removed, d.modified, d.unchanged) == (1, 1, 0, 1)  # a new conversation: a new key
        keyed2 = s.commit("keyed", load_rows(write(tmp_path / "k2.jsonl", changed), key_field="id"))
        d = s.diff(keyed, keyed2)
        assert (d.added, d.removed, d.modified, d.unchanged) == (0, 0, 1, 1)
        assert d.changed_columns.get("messages") == 1


def _export(capsys, store, ref, fmt, out, *extra):
    code, _, err = run(capsys, "data", "export", ref, "--format", fmt, "-o", str(out), "--store", store, *extra)
    assert code == 0, err
    return [json.loads(line) for line in out.read_text().splitlines()] if out.suffix == ".jsonl" \
        else pq.read_table(out).to_pylist()


def test_export_formats_round_trip_with_the_system_prompt(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SELFAUG_STORE", raising=False)
    store = str(tmp_path / "s.duckdb")
    with open_store(store) as s:
        v = s.commit("chat", load_rows(write(tmp_path / "c.jsonl", CHAT), key_field="id"))
        expected = [[{"role": "system", "content": "Sys"}, *CHAT[1]["messages"]] if "b" == k else CHAT[0]["messages"]
                    for k in s.read(v)["key"].to_pylist()]
    ref = v.ref
    for fmt in ("messages", "sharegpt", "trl"):
        for suffix in (".jsonl", ".parquet"):
            out = tmp_path / f"{fmt}{suffix}"
            records = _export(capsys, store, ref, fmt, out, "--system-prompt", "Sys")
            assert len(records) == 2
            back = load_rows(str(out))
            assert messages_of(back) == expected, (fmt, suffix)
    trl = _export(capsys, store, ref, "trl", tmp_path / "t.jsonl", "--system-prompt", "Sys")
    assert all(r["completion"][0]["role"] == "assistant" and len(r["completion"]) == 1 for r in trl)
    alpaca = _export(capsys, store, ref, "alpaca", tmp_path / "a.jsonl", "--system-prompt", "Sys")
    by_output = {r["output"]: r for r in alpaca}
    assert by_output["4"]["instruction"] == "2+2?" and by_output["4"]["system"] == "Be brief."
    assert by_output["4"]["history"] == [["Hi", "Hello"]]
    assert by_output["Blue"] == {"instruction": "Name a color", "input": "", "output": "Blue", "system": "Sys",
                                 "history": None}


def test_export_takes_the_system_prompt_of_the_recorded_train_step(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SELFAUG_STORE", raising=False)
    store = str(tmp_path / "s.duckdb")
    with open_store(store) as s:
        v = s.commit("mix", load_rows(write(tmp_path / "q.jsonl", [{"question": "1+1?", "answer": "2"}])),
                     step_id="mixid")
        plan = {"steps": [{"name": "mix.s0", "id": "mixid", "kind": "mix", "inputs": [], "params": {}},
                          {"name": "train.s0", "id": "trainid", "kind": "train", "inputs": ["mix.s0"],
                           "params": {"system_prompt": "From the recipe."}}]}
        s.start_run("r1", "h", json.dumps(plan))
        s.finish_run("r1", "ok")
    records = _export(capsys, store, v.ref, "messages", tmp_path / "m.jsonl")
    assert records == [{"messages": [{"role": "system", "content": "From the recipe."},
                                     {"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]}]
    code, _, err = run(capsys, "data", "export", v.ref, "--format", "axolotl", "-o", str(tmp_path / "x.jsonl"),
                       "--store", store)
    assert code == 2 and "--format" in err and "sharegpt" in err


def test_assistant_turns_last_trains_on_the_final_reply_only():
    from selfaug_compiler.train.formatting import IGNORE, format_rows
    from selfaug_compiler.train.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    row = {"messages": json.dumps(CHAT[0]["messages"])}
    (every,), _ = format_rows(tok, [row], 256, "all")
    (last,), _ = format_rows(tok, [row], 256, "last")
    assert every.input_ids == last.input_ids

    def targets(ex):
        return tok.decode([t for t, label in zip(ex.input_ids, ex.labels) if label != IGNORE])

    assert targets(every) == "Hello<|im_end|>4<|im_end|>"
    assert targets(last) == "4<|im_end|>"
    last_start = next(i for i, label in enumerate(last.labels) if label != IGNORE)
    assert all(label == IGNORE for label in last.labels[:last_start])
    assert last.labels[last_start:] == every.labels[last_start:]


def _recipe(tmp_path, data: str, rows, fmt: str | None) -> str:
    write(tmp_path / data, rows)
    fmt_line = f"\n  format: {fmt}" if fmt else ""
    (tmp_path / "r.yaml").write_text(
        "name: shapes\nmodel: {ref: packaged:smollm2-135m-instruct}\n"
        f"task:\n  name: t\n  source: {{kind: file, path: {data}}}{fmt_line}\n"
        "augment: {method: none}\neval: {retention: [], in_domain: []}\n")
    return str(tmp_path / "r.yaml")


def test_validate_accepts_chat_shapes_and_names_a_wrong_one(tmp_path, capsys):
    assert run(capsys, "validate", _recipe(tmp_path, "c.jsonl", CHAT, None))[0] == 0
    assert run(capsys, "validate", _recipe(tmp_path, "s.jsonl", SHAREGPT, "sharegpt"))[0] == 0
    code, out, err = run(capsys, "validate", _recipe(tmp_path, "c.jsonl", CHAT, "sharegpt"))
    text = out + err
    assert code == 2 and "task.format" in text and "conversations" in text and "r.yaml:" in text
    bad = [CHAT[1], {"messages": [{"role": "user", "content": "Q"}]}]
    code, out, err = run(capsys, "validate", _recipe(tmp_path, "b.jsonl", bad, None))
    text = out + err
    assert code == 2 and "b.jsonl: line 2" in text and "no assistant turn" in text and "task.format" in text


def test_shipped_chat_recipe_data_steps_store_conversations(tmp_path, capsys):
    """recipes/chat.yaml's ingest and mix steps (no model): both stages' rows are conversations,
    ShareGPT roles mapped, system prompts kept; the messages export is what the mix holds."""
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "chat.yaml"
    store = str(tmp_path / "s.duckdb")
    assert run(capsys, "validate", str(recipe))[0] == 0
    code, out, err = run(capsys, "run", str(recipe), "--store", store, "--until", "mix.*")
    assert code == 0, out + err
    with open_store(store, read_only=True) as s:
        mixes = {d["name"]: d for d in s.datasets()}
        chat = s.read("chat-mix.s0@1").to_pylist() if "chat-mix.s0" in mixes else None
        units = s.read("chat-mix.s1@1").to_pylist()
    assert chat is not None and len(chat) == 36 and len(units) == 36
    for rows in (chat, units):
        conversations = [json.loads(r["messages"]) for r in rows]
        assert all(r["prompt"] is None and r["source"] == "gold" for r in rows)
        assert all(c[-1]["role"] == "assistant" and {m["role"] for m in c} <= {"system", "user", "assistant"}
                   for c in conversations)
        assert any(c[0]["role"] == "system" for c in conversations) and any(len(c) >= 4 for c in conversations)
    exported = _export(capsys, store, "chat-mix.s1@1", "messages", tmp_path / "u.jsonl")
    assert [r["messages"] for r in exported] == [json.loads(r["messages"]) for r in units]

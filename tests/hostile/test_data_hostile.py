"""Hostile data files through the real CLI (`selfaug data import`, `validate`, `run`): rows
without their declared key, empty files, ragged CSV rows, text in another encoding.

Each case asserts the exit code, no traceback, the time limit, the line named where there is
one, and that the store is left as it was (it verifies, holding only what was there before).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfaug_compiler.store import open_store
from tests.hostile.store_cli import assert_clean, assert_verifies, selfaug


@pytest.fixture
def work(tmp_path) -> Path:
    """A store holding one dataset, ``before`` (made in-process: the setup is not under test)."""
    with open_store(tmp_path / "s.duckdb") as store:
        store.commit("before", [{"key": f"k{i}", "prompt": f"{i}+1?", "response": str(i + 1)} for i in range(5)])
    return tmp_path


def _import(work: Path, name: str, content: bytes, *extra: str):
    (work / name).write_bytes(content)
    return selfaug("data", "--store", "s.duckdb", "import", name, "--dataset", "t", *extra, cwd=work)


def _unchanged(work: Path) -> None:
    """The store verifies and still holds just the one version it had."""
    result = selfaug("data", "--store", "s.duckdb", "verify", "--format", "json", cwd=work)
    assert_clean(result, 0)
    report = json.loads(result.stdout)
    assert report["ok"] and report["stats"]["datasets"] == 1 and report["stats"]["versions"] == 1, report


def _jsonl(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


# ------------------------------------------------------------------ class 3: rows without their key
KEYLESS = [
    ("missing field", "k.jsonl", _jsonl({"id": "1", "prompt": "a"}, {"prompt": "b"}), "line 2"),
    ("null", "k.jsonl", _jsonl({"id": "1", "prompt": "a"}, {"id": "2", "prompt": "b"}, {"id": None, "prompt": "c"}),
     "line 3"),
    ("empty string", "k.jsonl", _jsonl({"id": "1", "prompt": "a"}, {"id": "", "prompt": "b"}), "line 2"),
    ("blank", "k.jsonl", _jsonl({"id": "  ", "prompt": "a"}, {"id": "2", "prompt": "b"}), "line 1"),
    ("after blank lines", "k.jsonl", b'{"id":"1","prompt":"a"}\n\n\n{"prompt":"b"}\n', "line 4"),
    ("csv empty cell", "k.csv", b"id,prompt\n1,a\n2,b\n,c\n", "line 4"),
    ("json array", "k.json", json.dumps([{"id": "1", "prompt": "a"}, {"prompt": "b"}]).encode(), "row 2"),
]


@pytest.mark.parametrize("case, name, content, where", KEYLESS, ids=[k[0] for k in KEYLESS])
def test_rows_without_the_declared_key_are_refused(work, case, name, content, where):
    result = _import(work, name, content, "--key", "id")
    assert_clean(result, 2, where, "key column 'id'")
    _unchanged(work)


def test_a_key_column_in_the_file_counts_as_declared(work):
    result = _import(work, "k.jsonl", _jsonl({"key": "a", "prompt": "x"}, {"prompt": "y"}))
    assert_clean(result, 2, "line 2", "key column 'key'")
    _unchanged(work)


def test_no_key_declared_still_keys_by_prompt_hash(work):
    assert_clean(_import(work, "k.jsonl", _jsonl({"prompt": "x"}, {"prompt": "y"})), 0, "2 rows")


RECIPE = """\
name: hostile
task:
  name: toy
  source: {{kind: file, path: {path}{extra}}}
  fields: {{prompt: question, response: answer, id: id}}
  answer_type: number
  split: {{train: {train}, heldout: 1, seed: 0}}
eval: {{retention: [], in_domain: []}}
store: {{path: s.duckdb}}
model: {{ref: "packaged:smollm2-135m-instruct"}}
"""


def test_a_recipe_task_without_its_id_column_fails_its_ingest(work):
    rows = [{"id": f"k{i}", "question": f"{i}+1?", "answer": str(i + 1)} for i in range(6)]
    rows[4].pop("id")
    (work / "t.jsonl").write_bytes(_jsonl(*rows))
    (work / "r.yaml").write_text(RECIPE.format(path="t.jsonl", extra="", train=4))
    result = selfaug("run", "r.yaml", "--until", "ingest.*", cwd=work)
    assert_clean(result, 2, "line 5", "key column 'id'")
    _unchanged(work)


# ------------------------------------------------------------------ class 6: empty files, ragged CSV rows
EMPTY = [
    ("empty jsonl", "e.jsonl", b"", "is empty"),
    ("blank lines", "e.jsonl", b"\n \n\t\n", "is empty"),
    ("empty csv", "e.csv", b"", "is empty"),
    ("header only", "e.csv", b"prompt,response\n", "has no rows"),
    ("empty json", "e.json", b"", "is empty"),
    ("empty array", "e.json", b"[]", "has no rows"),
    ("empty parquet", "e.parquet", b"", "is empty"),
    ("empty gz", "e.jsonl.gz", __import__("gzip").compress(b""), "is empty"),
]


# ------------------------------------------------------------------ class 6: ragged CSV rows
RAGGED = [
    ("extra field", "r.csv", b"prompt,response\na,b\nc,d,e\nf,g\n", "line 3 has 3 fields, the header has 2"),
    ("missing field", "r.csv", b"prompt,response\na,b\nc\n", "line 3 has 1 fields, the header has 2"),
    ("tsv", "r.tsv", b"prompt\tresponse\na\tb\nc\td\te\n", "line 3 has 3 fields"),
    ("after a quoted newline", "r.csv", b'prompt,response\n"two\nlines",b\nc,d,e\n', "line 4 has 3 fields"),
    ("far down", "r.csv", b"prompt,response\n" + b"a,b\n" * 50000 + b"x,y,z\n", "line 50002 has 3 fields"),
]


@pytest.mark.parametrize("case, name, content, words", EMPTY + RAGGED, ids=[e[0] for e in EMPTY + RAGGED])
def test_empty_files_and_ragged_csv_rows_say_so(work, case, name, content, words):
    assert_clean(_import(work, name, content), 2, words)
    _unchanged(work)


def test_quoted_delimiters_are_not_ragged(work):
    assert_clean(_import(work, "q.csv", b'prompt,response\n"a, with comma",b\nc,d\n'), 0, "2 rows")


# ------------------------------------------------------------------ class 6: text in another encoding
NOT_UTF8 = [
    ("latin-1 csv", "l.csv", "prompt,response\na,b\ncafé,x\n".encode("latin-1"), "line 3", "latin-1"),
    ("latin-1 jsonl", "l.jsonl", '{"prompt":"a"}\n{"prompt":"naïve"}\n'.encode("latin-1"), "line 2", "latin-1"),
    ("cp1252 quotes", "l.csv", "prompt,response\n\u201cquoted\u201d,b\n".encode("cp1252"), "line 2", "cp1252"),
    ("utf-16", "l.jsonl", '{"prompt":"a","response":"b"}\n'.encode("utf-16"), "line 1", "utf-16"),
    ("latin-1 json", "l.json", '[{"prompt":"ça"}]'.encode("latin-1"), "line 1", "latin-1"),
]


@pytest.mark.parametrize("case, name, content, line, encoding", NOT_UTF8, ids=[n[0] for n in NOT_UTF8])
def test_non_utf8_text_names_the_line_and_the_option(work, case, name, content, line, encoding):
    result = _import(work, name, content)
    assert_clean(result, 2, line, "not utf-8 text", "--encoding")
    _unchanged(work)
    assert_clean(selfaug("data", "--store", "s.duckdb", "import", name, "--dataset", "t", "--encoding", encoding,
                         cwd=work), 0, "committed")
    assert_verifies(work / "s.duckdb", work)


def test_the_decoded_text_is_stored(work):
    _import(work, "l.csv", "prompt,response\ncafé,thé\n".encode("latin-1"), "--encoding", "latin-1")
    shown = selfaug("data", "--store", "s.duckdb", "show", "t", "--format", "json", cwd=work)
    assert json.loads(shown.stdout)["rows"][0]["prompt"] == "café"


@pytest.mark.parametrize("encoding", ["klingon", "utf-99", "x" * 500])
def test_unknown_encodings_are_refused(work, encoding):
    result = _import(work, "g.jsonl", _jsonl({"prompt": "a"}), "--encoding", encoding)
    assert_clean(result, 2, "unknown text encoding")
    assert len(result.output) < 1000
    _unchanged(work)


def test_recipe_encoding_option_for_validate_and_run(work):
    rows = "id,question,answer\n" + "".join(f"{i},café {i}+1?,{i + 1}\n" for i in range(6))
    (work / "l.csv").write_bytes(rows.encode("latin-1"))
    (work / "bad.yaml").write_text(RECIPE.format(path="l.csv", extra="", train=4))
    (work / "good.yaml").write_text(RECIPE.format(path="l.csv", extra=", encoding: latin-1", train=4))
    assert_clean(selfaug("validate", "bad.yaml", cwd=work), 2, "line 2", "task.source.encoding")
    assert_clean(selfaug("run", "bad.yaml", "--until", "ingest.*", cwd=work), 2, "line 2", "task.source.encoding")
    _unchanged(work)
    assert_clean(selfaug("validate", "good.yaml", cwd=work), 0)
    assert_clean(selfaug("run", "good.yaml", "--until", "ingest.*", cwd=work), 0, "1 step(s) ran")
    shown = selfaug("data", "--store", "s.duckdb", "show", "toy-train", "--format", "json", cwd=work)
    assert all("café" in r["prompt"] for r in json.loads(shown.stdout)["rows"])
    assert_verifies(work / "s.duckdb", work)

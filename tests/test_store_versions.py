"""Store versions: ids, dedup, shared rows, resolution, staging, records, migration."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.store import ROW_SCHEMA, open_store, resolve_store_path
from selfaug_compiler.store.schema import SCHEMA_VERSION, migrate, schema_version


def rows(n: int, suffix: str = "", **extra) -> list[dict]:
    return [{"key": f"k{i}", "prompt": f"question {i}", "response": f"answer {i}{suffix}", **extra} for i in range(n)]


def count(store, table: str) -> int:
    return store.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store.duckdb", wait_s=0)
    yield s
    s.close()


def test_commit_and_read_back(store):
    v = store.commit("ds", rows(3), message="first")
    assert (v.seq, v.n_rows, v.parent, v.message) == (1, 3, None, "first")
    table = store.read("ds")
    assert table.schema.equals(ROW_SCHEMA)
    assert table["key"].to_pylist() == ["k0", "k1", "k2"]
    assert table["source"].to_pylist() == ["gold"] * 3
    assert store.read_pandas("ds@1")["response"].tolist() == ["answer 0", "answer 1", "answer 2"]
    hf = store.read_hf(v.ref)
    assert hf.num_rows == 3 and hf[1]["prompt"] == "question 1"


def test_same_content_twice_is_the_same_version_and_stores_nothing(store):
    v1 = store.commit("ds", rows(5))
    before = (count(store, "rows"), count(store, "version_rows"), count(store, "versions"))
    v2 = store.commit("ds", list(reversed(rows(5))))  # order does not matter: keys do
    assert v2.id == v1.id and v2.seq == 1
    assert (count(store, "rows"), count(store, "version_rows"), count(store, "versions")) == before


def test_rows_are_shared_between_versions(store):
    store.commit("ds", rows(10))
    changed = rows(10)
    changed[0]["response"] = "different"
    v2 = store.commit("ds", changed)
    assert v2.seq == 2 and v2.parent == store.resolve("ds@1").id
    assert count(store, "rows") == 11  # 10 + the one changed row
    assert count(store, "version_rows") == 20


def test_id_depends_on_content_parent_and_step(store):
    a = store.commit("a", rows(3), parent=None, step_id="s1")
    b = store.commit("b", rows(3), parent=None, step_id="s1")
    c = store.commit("c", rows(3), parent=None, step_id="s2")
    assert a.id == b.id != c.id
    d = store.commit("a", rows(3, suffix="!"), step_id="s1")
    assert d.id not in (a.id, c.id) and d.parent == a.id


def test_key_defaults_to_prompt_hash_not_position(store):
    data = [{"prompt": "p1", "response": "r1"}, {"prompt": "p2", "response": "r2"}]
    v1 = store.commit("ds", data)
    keys = store.read(v1)["key"].to_pylist()
    import hashlib

    assert sorted(keys) == sorted(hashlib.sha256(p.encode()).hexdigest() for p in ("p1", "p2"))
    assert store.commit("ds", list(reversed(data))).id == v1.id


def test_key_field_from_a_declared_column(store):
    table = pa.table({"qid": [7, 8], "prompt": ["a", "b"], "response": ["x", "y"]})
    v = store.commit("ds", table, key_field="qid")
    assert store.read(v)["key"].to_pylist() == ["7", "8"]


def test_content_hash_covers_payload_only(store):
    store.commit("ds", rows(2))
    store.commit("ds", rows(2, judge_verdict="pass", judge_score=0.9), step_id="judge")
    t1 = store.read("ds@1", with_hashes=True)
    t2 = store.read("ds@2", with_hashes=True)
    assert t1["content_hash"].to_pylist() == t2["content_hash"].to_pylist()
    assert t1["row_hash"].to_pylist() != t2["row_hash"].to_pylist()


def test_duplicate_key_is_refused_and_store_unchanged(store):
    store.commit("ds", rows(2))
    before = (count(store, "rows"), count(store, "versions"))
    bad = rows(3) + [{"key": "k1", "prompt": "other", "response": "x"}]
    with pytest.raises(SelfaugError, match="duplicate key 'k1'"):
        store.commit("ds", bad)
    assert (count(store, "rows"), count(store, "versions")) == before


def test_unknown_source_is_refused(store):
    with pytest.raises(SelfaugError, match="unknown row source"):
        store.commit("ds", [{"key": "a", "prompt": "p", "source": "robot"}])


def test_resolve_forms(store):
    v1 = store.commit("ds", rows(2))
    v2 = store.commit("ds", rows(3))
    assert store.resolve("ds").id == v2.id
    assert store.resolve("ds@1").id == v1.id
    assert store.resolve(f"ds@{v1.id[:8]}").id == v1.id
    store.tag("ds@1", "baseline")
    assert store.resolve("ds@baseline").id == v1.id
    assert store.resolve("ds@1").tags == ("baseline",)
    for bad in ("ds@9", "ds@zzzz-tag", "nope", "nope@1"):
        with pytest.raises(SelfaugError):
            store.resolve(bad)
    with pytest.raises(SelfaugError, match="read as a version"):
        store.tag("ds@1", "123")


def test_log_datasets_and_version_for_step(store):
    store.commit("ds", rows(2), step_id="step-a")
    store.commit("ds", rows(3), step_id="step-b")
    store.commit("other", rows(1), step_id="step-a")
    assert [v.seq for v in store.log("ds")] == [1, 2]
    assert [d["name"] for d in store.datasets()] == ["ds", "other"]
    assert store.version_for_step("step-b").n_rows == 3
    assert store.version_for_step("step-a", "other").dataset == "other"
    assert store.version_for_step("missing") is None


def test_staging_commit_clears_stage_and_resumes(store):
    store.stage("gen", rows(4)[:2])
    store.stage("gen", rows(4)[2:])
    assert store.staged("gen").num_rows == 4
    # a "restarted" step sees what it staged and only adds the rest
    done = set(store.staged("gen")["key"].to_pylist())
    todo = [r for r in rows(6) if r["key"] not in done]
    v = store.commit("gen-out", todo, from_stage="gen", step_id="gen")
    assert v.n_rows == 6
    assert store.staged("gen").num_rows == 0
    assert store.verify().ok


def test_runs_artifacts_and_evals(store):
    store.start_run("r1", "rh", {"steps": []})
    store.record_step("r1", "ingest", "sid", "ok", 1.0, 2.0, {"datasets": {"train": "x@1"}})
    store.record_step("r1", "train", "tid", "failed", 1.0, 2.0, None, error="boom")
    store.finish_run("r1", "failed")
    assert store.runs()[0]["status"] == "failed" and store.runs()[0]["steps"] == 2
    assert store.step_result("sid") == {"datasets": {"train": "x@1"}}
    assert store.step_result("tid") is None
    store.put_artifact("tid", "adapter", "/a/b", "fp1", {"r": 8})
    assert store.artifact("tid")["meta"] == {"r": 8} and store.artifact("nope") is None
    store.put_eval("m", "b", "arc_easy", {"acc": 0.5}, [{"idx": 0, "correct": True}, {"idx": 1, "correct": False}])
    metrics, items = store.get_eval("m", "b")
    assert metrics == {"acc": 0.5} and items["correct"].to_pylist() == [True, False]
    assert store.get_eval("m", "other") is None


def test_migrating_a_v1_store(tmp_path):
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    migrate(con, target=1)
    assert schema_version(con) == 1
    con.close()
    with open_store(path) as s:  # v1 -> current, data written at v1 still readable
        assert schema_version(s.con) == SCHEMA_VERSION
        s.commit("ds", rows(2))
        s.stage("x", rows(1))
        assert s.verify().ok


def test_migration_from_v1_keeps_v1_data(tmp_path):
    path = tmp_path / "old.duckdb"
    with open_store(path) as s:
        v = s.commit("ds", rows(3))
    import duckdb

    con = duckdb.connect(str(path))  # pretend the store predates v2: drop v2's tables
    for t in ("staged", "runs", "step_runs", "artifacts", "evals", "eval_items"):
        con.execute(f"DROP TABLE {t}")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    with open_store(path, read_only=True) as s:  # read-only open migrates once, then reads
        assert s.resolve("ds").id == v.id and s.read("ds").num_rows == 3
    with open_store(path) as s:
        assert schema_version(s.con) == SCHEMA_VERSION and s.runs() == []


def test_store_path_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("SELFAUG_STORE", raising=False)
    assert str(resolve_store_path()) == ".selfaug/store.duckdb"
    assert str(resolve_store_path(recipe_store_path="r.duckdb")) == "r.duckdb"
    monkeypatch.setenv("SELFAUG_STORE", "env.duckdb")
    assert str(resolve_store_path(recipe_store_path="r.duckdb")) == "env.duckdb"
    assert str(resolve_store_path("cli.duckdb", recipe_store_path="r.duckdb")) == "cli.duckdb"


def test_read_only_store_refuses_writes(tmp_path):
    with open_store(tmp_path / "s.duckdb") as s:
        s.commit("ds", rows(1))
    with open_store(tmp_path / "s.duckdb", read_only=True) as s:
        with pytest.raises(SelfaugError, match="read-only"):
            s.commit("ds", rows(2))
    with pytest.raises(SelfaugError, match="no store"):
        open_store(tmp_path / "missing.duckdb", read_only=True)


def test_verify_detects_tampering_and_gc(store):
    store.commit("ds", rows(3))
    store.commit("ds", rows(2))
    assert store.verify().ok
    store.con.execute("UPDATE rows SET response = 'tampered' WHERE key = 'k0'")
    report = store.verify()
    assert not report.ok and any("content hash" in p for p in report.problems)
    store.con.execute("DELETE FROM version_rows WHERE vid = 1")
    store.con.execute("INSERT INTO version_rows VALUES (99, 1)")
    problems = " ".join(store.verify().problems)
    assert "orphan membership" in problems and "recorded" in problems
    store.con.execute("DELETE FROM version_rows WHERE vid = 99")
    assert store.gc() == 1  # k2 is referenced by no version now

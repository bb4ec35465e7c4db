"""The fast paths of commit and diff give the same answers as the plain definitions."""

from __future__ import annotations

import random
import statistics

import pytest

from selfaug_compiler.store import commit as C
from selfaug_compiler.store import open_store
from selfaug_compiler.store.versions import content_digest_sql, version_id


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store.duckdb", wait_s=0)
    yield s
    s.close()


def count(store, table: str) -> int:
    return store.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def test_streamed_digest_equals_the_sql_definition(store, monkeypatch):
    monkeypatch.setattr(C, "_DIGEST_BATCH", 997)  # many batches: their order must be the key order
    rng = random.Random(0)
    keys = [f"k{rng.randrange(10**9)}-é{i}" for i in range(20_000)] + ["", "Z", "ü", "a b"]
    rng.shuffle(keys)
    v = store.commit("ds", [{"key": k, "prompt": f"p {k}", "response": "r"} for k in keys])
    sql_digest = store.con.execute(
        f"SELECT {content_digest_sql('r')} FROM version_rows vr JOIN rows r USING (row_hash) WHERE vr.vid = ?",
        [v.vid]).fetchall()[0][0]
    assert v.id == version_id(sql_digest, None, None)
    assert store.verify().ok


def test_unchanged_recommit_is_found_without_storing_anything(store):
    data = [{"key": f"k{i}", "prompt": f"q{i}", "response": f"a{i}", "judge_verdict": "pass"} for i in range(50)]
    v1 = store.commit("ds", data)
    before = (count(store, "rows"), count(store, "version_rows"), count(store, "versions"))
    assert store.commit("ds", list(reversed(data))) == v1
    assert (count(store, "rows"), count(store, "version_rows"), count(store, "versions")) == before
    swapped = data[:-1] + [{**data[-1], "key": "other"}]  # same count, one different row
    assert store.commit("ds", swapped).seq == 2
    drift = [{**r, "judge_verdict": "fail"} if r["key"] == "k3" else r for r in swapped]
    v3 = store.commit("ds", drift)  # only metadata differs: still a new version
    assert v3.seq == 3 and store.diff("ds@2", v3).metadata_drift == 1
    assert store.commit("ds", drift, step_id="s").seq == 4  # same rows from another step


def _random_rows(rng: random.Random, keys: range, tag: str) -> list[dict]:
    rows = []
    for i in keys:
        row = {"key": f"k{i}", "prompt": " ".join(["w"] * rng.randint(0, 6)), "response": f"r{rng.randint(0, 3)}",
               "source": rng.choice(["gold", "self", "replay"])}
        if rng.random() < 0.3:
            row["judge_verdict"] = tag
        rows.append(row)
    return rows


def test_diff_matches_a_direct_computation(store):
    rng = random.Random(7)
    a = _random_rows(rng, range(0, 400), "x")
    b = _random_rows(random.Random(7), range(0, 400), "x")[50:]  # same rows, 50 removed
    for row in b[::9]:
        row["response"] = row["response"] + " changed"
    for row in b[1::11]:
        row["judge_verdict"] = "y"
    b += _random_rows(rng, range(1000, 1030), "z")
    va, vb = store.commit("ds", a), store.commit("ds", b)
    d = store.diff(va, vb)
    old, new = {r["key"]: r for r in a}, {r["key"]: r for r in b}
    common = old.keys() & new.keys()

    def payload(r):
        return r.get("prompt"), r.get("response")

    modified = sum(payload(old[k]) != payload(new[k]) for k in common)
    unchanged = sum(old[k] == new[k] for k in common)
    assert (d.added, d.removed, d.modified) == (len(new.keys() - old.keys()), len(old.keys() - new.keys()), modified)
    assert (d.unchanged, d.metadata_drift) == (unchanged, len(common) - modified - unchanged)
    for side, rows in (("a", a), ("b", b)):
        assert d.sources[side] == {s: n for s in {r["source"] for r in rows}
                                   for n in [sum(r["source"] == s for r in rows)]}
        words = [len(r["prompt"].split()) for r in rows]
        assert d.lengths["prompt"][side]["mean"] == pytest.approx(statistics.mean(words), abs=1e-3)
        assert d.lengths["prompt"][side]["median"] == pytest.approx(statistics.median(words))
    pairs = {}
    for k in common:
        pairs[(old[k]["source"], new[k]["source"])] = pairs.get((old[k]["source"], new[k]["source"]), 0) + 1
    assert {(t["from"], t["to"]): t["count"] for t in d.transitions} == pairs

"""Diff of two versions on constructed cases: every count is known in advance."""

from __future__ import annotations

import pytest

from selfaug_compiler.store import open_store


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store.duckdb", wait_s=0)
    yield s
    s.close()


def base_rows() -> list[dict]:
    return [{"key": f"k{i}", "prompt": "one two three", "response": "a b", "source": "gold",
             "prompt_tokens": 3, "response_tokens": 2} for i in range(10)]


def test_counts_drift_sources_and_transitions(store):
    a = base_rows()
    b = [dict(r) for r in a[:8]]  # k8, k9 removed
    b[0].update(response="a b c d", source="self", response_tokens=4)  # modified, gold -> self
    b[1].update(response="x y z w", source="paraphrase", response_tokens=4)  # modified, gold -> paraphrase
    b[2].update(judge_verdict="fail", judge_name="numeric")  # metadata drift
    b += [{"key": "new1", "prompt": "p", "response": "r", "source": "self_dialogue", "prompt_tokens": 1,
           "response_tokens": 1}]  # added
    va, vb = store.commit("ds", a), store.commit("ds", b)
    d = store.diff(va, vb)
    assert (d.added, d.removed, d.modified, d.unchanged, d.metadata_drift) == (1, 2, 2, 5, 1)
    assert d.changed_columns == {"response": 2, "source": 2, "response_tokens": 2}
    assert d.drift_columns == {"judge_name": 1, "judge_verdict": 1}
    assert d.sources == {"a": {"gold": 10}, "b": {"gold": 6, "paraphrase": 1, "self": 1, "self_dialogue": 1}}
    trans = {(t["from"], t["to"]): t["count"] for t in d.transitions}
    assert trans == {("gold", "gold"): 6, ("gold", "self"): 1, ("gold", "paraphrase"): 1}
    assert d.mix_ratio == {"a": 0.0, "b": pytest.approx(3 / 9)}
    assert d.lengths["response"]["unit"] == "tokens"
    assert d.lengths["response"]["a"]["mean"] == 2.0
    assert d.lengths["response"]["b"]["mean"] == pytest.approx((6 * 2 + 2 * 4 + 1) / 9, abs=1e-3)
    out = d.to_dict()
    assert all(isinstance(out[k], int) for k in ("added", "removed", "modified", "unchanged"))
    assert "+1 added, -2 removed, ~2 modified" in d.summary()


def test_word_counts_when_token_columns_are_missing(store):
    va = store.commit("w", [{"key": "a", "prompt": "one  two\tthree", "response": ""},
                            {"key": "b", "prompt": "x", "response": "y z"}])
    vb = store.commit("w", [{"key": "a", "prompt": "one", "response": "1 2 3 4"}])
    d = store.diff(va, vb)
    assert d.lengths["prompt"]["unit"] == "words"
    assert d.lengths["prompt"]["a"]["mean"] == 2.0 and d.lengths["prompt"]["b"]["mean"] == 1.0
    assert d.lengths["response"]["a"]["mean"] == 1.0  # "" counts 0 words, "y z" 2
    assert d.lengths["response"]["b"]["median"] == 4.0


def test_cells_on_request(store):
    va = store.commit("c", [{"key": "a", "prompt": "p", "response": "old"}, {"key": "b", "prompt": "q", "response": "s"}])
    vb = store.commit("c", [{"key": "a", "prompt": "p", "response": "new"}, {"key": "b", "prompt": "q", "response": "s"}])
    assert store.diff(va, vb).cells == []
    cells = store.diff("c@1", "c@2", cells=10).cells
    assert cells == [{"key": "a", "column": "response", "a": "old", "b": "new"}]


def test_identical_versions(store):
    v = store.commit("i", base_rows())
    d = store.diff(v, v)
    assert (d.added, d.removed, d.modified, d.unchanged, d.metadata_drift) == (0, 0, 0, 10, 0)

"""Embedding similarity (packaged MiniLM) and the model-as-judge verdict parsing."""

from __future__ import annotations

import json

import pytest

from selfaug_compiler.judges.model_judge import judge_with_model, parse_verdict
from selfaug_compiler.judges.verdicts import code_tests, extract_code, judge_items


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("torch")
    from selfaug_compiler.judges.embedding import Embedder

    return Embedder.load()


def test_embeddings_are_unit_vectors_and_similarity_ranks_meaning(embedder):
    vecs = embedder.embed(["a cat sits on the mat", "stock prices fell sharply"])
    assert vecs.shape == (2, 384)
    assert abs(float(vecs[0].norm()) - 1.0) < 1e-4
    sims = embedder.similarity(["The cat is sitting on the mat.", "The cat is sitting on the mat."],
                               ["A cat sits on a mat.", "Interest rates rose in March."])
    assert sims[0] > 0.7 and sims[1] < 0.3
    assert embedder.similarity([], []) == []


def test_embedding_judge_threshold(embedder):
    items = [{"prompt": "q", "answer": "Paris is the capital of France.", "gold_text": "The capital of France is Paris."},
             {"prompt": "q", "answer": "I like trains.", "gold_text": "The capital of France is Paris."}]
    from selfaug_compiler.judges.verdicts import judge_embedding

    verdicts = judge_embedding(items, 0.6, embedder=embedder)
    assert [v.passed for v in verdicts] == [True, False]
    assert json.loads(verdicts[0].raw)["threshold"] == 0.6


def test_parse_verdict():
    assert parse_verdict("Yes, they match.") is True
    assert parse_verdict("no") is False
    assert parse_verdict("NO. The final numbers differ (yes, really)") is False
    assert parse_verdict("Maybe") is None
    assert parse_verdict("yesterday") is None


def test_model_judge_keeps_raw_reply(tmp_path):
    pytest.importorskip("torch")
    from selfaug_compiler.models.loading import load_model
    from tests.tiny_models import build_tiny_model

    loaded = load_model(str(build_tiny_model(tmp_path / "m")), dtype="float32", device="cpu")
    verdicts = judge_with_model(loaded, [{"prompt": "1+1?", "gold": "2", "answer": "2"}])
    assert len(verdicts) == 1 and isinstance(verdicts[0].raw, str)
    assert verdicts[0].passed == parse_verdict(verdicts[0].raw)
    through = judge_items([{"prompt": "1+1?", "answer": "2", "gold_text": "2", "gold": "2"}],
                          {"kind": "model", "template": "prompts/judge.j2"}, loaded=loaded)
    assert through[0].name == "model" and through[0].raw == verdicts[0].raw


def test_numeric_and_code_judges_through_judge_items():
    num = judge_items([{"prompt": "q", "answer": "so 3 + 4 = 7", "gold_text": "#### 7", "gold": "7"},
                       {"prompt": "q", "answer": "8", "gold_text": "#### 7", "gold": "7"}], {"kind": "numeric"})
    assert [v.label for v in num] == ["pass", "fail"]
    assert json.loads(num[1].raw) == {"extracted": "8", "gold": "7"}
    meta = {"test_list": ["assert square(3) == 9"], "test_setup_code": ""}
    code = judge_items([{"prompt": "q", "answer": "Here:\n```python\ndef square(x):\n    return x * x\n```", "meta": meta},
                        {"prompt": "q", "answer": "def square(x):\n    return x + x", "meta": meta},
                        {"prompt": "q", "answer": "def square(x): pass", "meta": {}}],
                       {"kind": "code_exec"}, timeout_s=5)
    assert [v.passed for v in code] == [True, False, False]
    assert "no tests" in code[2].raw


def test_extract_code_and_tests():
    assert extract_code("text\n```py\nx = 1\n```\nmore\n```python\ny = 2\n```") == "x = 1\n\ny = 2"
    assert extract_code("x = 1") == "x = 1"
    assert code_tests({"test": "def check(f): pass", "entry_point": "f"}) == (["def check(f): pass", "check(f)"], "")


def test_embed_keeps_input_order_when_batching_by_length(embedder):
    texts = ["short", "a much longer sentence about the history of tea in China and India", "mid length text"]
    together = embedder.embed(texts)
    for i, t in enumerate(texts):
        alone = embedder.embed([t])[0]
        assert float((together[i] - alone).abs().max()) < 1e-4

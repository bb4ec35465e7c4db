"""validate's model.backend checks: vllm without CUDA refused with the reason, openai without a URL
named (a warning: the run's machine may set it), the key variable named, --online asks GET /models of the (stub) server and confirms the name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfaug_compiler.compile.backend_checks import set_online
from selfaug_compiler.compile.validation import validate_recipe
from tests.test_backends_openai_stub import StubServer


def write(tmp: Path, backend: dict) -> Path:
    with open(tmp / "toy.jsonl", "w") as f:
        for i in range(4):
            f.write(json.dumps({"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"}) + "\n")
    recipe = {"name": "srv", "model": {"ref": "packaged:smollm2-135m-instruct", "backend": backend},
              "task": {"name": "toy", "source": {"kind": "file", "path": "toy.jsonl"}, "answer_type": "number",
                       "fields": {"prompt": "question", "response": "answer"}}}
    path = tmp / "r.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def backend_problems(path: Path, online: bool = False) -> list:
    set_online(online)
    try:
        return [p for p in validate_recipe(path).problems if (p.field or "").startswith("model.backend")]
    finally:
        set_online(False)


def test_vllm_without_cuda_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    problems = backend_problems(write(tmp_path, {"kind": "vllm"}))
    assert any(p.severity == "error" and "needs a CUDA GPU" in p.message for p in problems)


def test_openai_without_a_url_or_key_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("MY_KEY", raising=False)
    problems = backend_problems(write(tmp_path, {"kind": "openai", "api_key_env": "MY_KEY"}))
    assert not [p for p in problems if p.severity == "error"]
    [url] = [p for p in problems if p.field == "model.backend.base_url"]
    assert "OPENAI_BASE_URL" in url.message
    assert any(p.severity == "warning" and "$MY_KEY" in p.message for p in problems)


def test_online_check_against_the_stub(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    stub = StubServer()
    stub.serves = {"stub-model"}
    try:
        good = write(tmp_path, {"kind": "openai", "base_url": stub.url, "served_model": "stub-model"})
        assert backend_problems(good, online=False) == []
        assert backend_problems(good, online=True) == []
        bad = write(tmp_path, {"kind": "openai", "base_url": stub.url, "served_model": "nope"})
        assert backend_problems(bad, online=False) == []
        [p] = backend_problems(bad, online=True)
        assert "does not serve 'nope'" in p.message and "stub-model" in p.expected
        # a server whose GET /models fails or omits the model (transformers serve FOLDER without a hub
        # cache answers 500) passes when a 1-token request for the model is answered
        stub.list_models = False
        good = write(tmp_path, {"kind": "openai", "base_url": stub.url, "served_model": "stub-model"})
        assert backend_problems(good, online=True) == []
        assert stub.bodies[-1]["model"] == "stub-model" and stub.bodies[-1]["max_tokens"] == 1
        bad = write(tmp_path, {"kind": "openai", "base_url": stub.url, "served_model": "nope"})
        [p] = backend_problems(bad, online=True)
        assert "did not answer GET /models" in p.message and "HTTP 400" in p.message
    finally:
        stub.server.shutdown()
        stub.server.server_close()
    good = write(tmp_path, {"kind": "openai", "base_url": stub.url, "served_model": "stub-model"})  # (one file)
    [p] = backend_problems(good, online=True)
    assert "did not answer GET /models" in p.message


def test_online_probe_waits_for_a_server_loading_its_model(tmp_path, monkeypatch):
    """`transformers serve` loads the model on the first request: the 1-token probe waits as long as the
    recipe's request_timeout_s (up to PROBE_TIMEOUT_S), not the short GET /models timeout."""
    from selfaug_compiler.compile import backend_checks

    monkeypatch.setenv("OPENAI_API_KEY", "x")
    monkeypatch.setattr(backend_checks, "LIST_TIMEOUT_S", 0.5)
    stub = StubServer()
    stub.list_models = False
    try:
        stub.script = ["slow"]
        good = write(tmp_path, {"kind": "openai", "base_url": stub.url, "served_model": "stub-model",
                                "request_timeout_s": 5})
        assert backend_problems(good, online=True) == []
        assert stub.bodies[-1]["max_tokens"] == 1
        stub.script = ["slow"]
        short = write(tmp_path, {"kind": "openai", "base_url": stub.url, "served_model": "stub-model",
                                 "request_timeout_s": 1})
        [p] = backend_problems(short, online=True)
        assert "timed out" in p.message
    finally:
        stub.server.shutdown()
        stub.server.server_close()

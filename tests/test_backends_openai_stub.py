"""The openai backend against a tiny local stub server (fault injection: 429, 500, garbage, hang, 404)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from selfaug_compiler.generate.backends import BackendError, backend_kinds, make_backend
from selfaug_compiler.generate.engine import SamplingParams


class StubServer:
    """An OpenAI-compatible stub: ``script`` is the list of behaviours for the next requests."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.bodies: list[dict] = []
        self.serves: set[str] | None = None  # set: other models are refused with 400, like a pinned server
        self.list_models = True  # False: GET /models answers 500, as transformers serve does without a hub cache
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, payload: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                if not stub.list_models:
                    return self._send(500, b"Internal Server Error")
                self._send(200, json.dumps({"data": [{"id": "stub-model"}]}).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.bodies.append(body)
                if stub.serves is not None and body.get("model") not in stub.serves:
                    return self._send(400, json.dumps({"detail": f"Server is pinned; requested {body.get('model')!r}"}).encode())
                what = stub.script.pop(0) if stub.script else "ok"
                if what == "hang":
                    threading.Event().wait(1.0)
                    return
                if what == "slow":  # a server loading its model on the first request
                    threading.Event().wait(1.5)
                    what = "ok"
                if what in ("429", "500", "404"):
                    return self._send(int(what), b'{"error": "stub"}')
                if what == "garbage":
                    return self._send(200, b"<html>not json")
                if what == "nochoices":
                    return self._send(200, b'{"choices": []}')
                reason = "length" if what == "length" else "stop"
                msg = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
                text = f"echo {msg} seed={body['seed']}"
                self._send(200, json.dumps({"model": "stub-model", "system_fingerprint": "fp_stub",
                                            "choices": [{"message": {"content": text}, "text": text,
                                                         "finish_reason": reason}],
                                            "usage": {"prompt_tokens": 3, "completion_tokens": 5}}).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stub():
    s = StubServer()
    yield s
    s.server.shutdown()


def backend(stub, **kw):
    opts = dict(model="stub-model", base_url=stub.url, max_concurrency=2, max_retries=2, backoff_s=0.01,
                request_timeout_s=0.3)
    return make_backend("openai", **{**opts, **kw})


def test_registry_names_three_backends():
    assert backend_kinds() == ["openai", "transformers", "vllm"]


def test_generations_in_order_with_seed_finish_reason_and_batches(stub):
    stub.script = ["ok", "length"]
    batches = []
    gens = backend(stub, max_concurrency=1).generate(
        [[{"role": "user", "content": "a"}], "b", "c"], SamplingParams(max_new_tokens=5), seeds=[7, 8, 9],
        batch_size=2, on_batch=lambda idx, g: batches.append(idx))
    assert [g.text for g in gens] == ["echo a seed=7", "echo b seed=8", "echo c seed=9"]
    assert [g.finish_reason for g in gens] == ["stop", "length", "stop"]
    assert gens[0].meta == {"served_model": "stub-model", "system_fingerprint": "fp_stub"}
    assert (gens[0].prompt_tokens, gens[0].new_tokens) == (3, 5)
    assert batches == [[0, 1], [2]]
    assert stub.bodies[0]["max_tokens"] == 5 and stub.bodies[0]["model"] == "stub-model"
    assert backend(stub).provenance()["batch_invariant"] is False


def test_stop_strings_are_sent_and_applied_to_a_server_that_ignores_them(stub):
    """The request carries ``stop``; this stub (like some servers) ignores it and sends the whole
    text with ``length``: the reply is cut before the first stop string and ends as ``stop``."""
    stub.script = ["length", "length"]
    gens = backend(stub, max_concurrency=1).generate(["b x", "none here"], SamplingParams(max_new_tokens=5, stop=(" x",)),
                                                     seeds=[1, 2])
    assert [body["stop"] for body in stub.bodies] == [[" x"], [" x"]]
    assert (gens[0].text, gens[0].finish_reason) == ("echo b", "stop")
    assert (gens[1].text, gens[1].finish_reason) == ("echo none here seed=2", "length")
    backend(stub).generate(["c"], SamplingParams(), seeds=[3])
    assert "stop" not in stub.bodies[-1]  # no stop strings: the request is as before


def test_completions_mode_sends_prompt(stub):
    """Completions mode serves a completion-style model: a step's prompt (chat=None) goes in the
    training format (prompt + newline, models/completion.py); chat=False sends it as given."""
    done = backend(stub, mode="completions").generate(["raw"], SamplingParams(), seeds=[1])
    assert stub.bodies[0]["prompt"] == "raw\n" and done[0].text.startswith("echo raw")
    as_given = backend(stub, mode="completions").generate(["raw"], SamplingParams(), seeds=[1], chat=False)
    assert as_given[0].text == "echo raw seed=1" and stub.bodies[1]["prompt"] == "raw"
    with pytest.raises(BackendError, match="set mode: chat"):
        backend(stub, mode="completions").generate(["raw"], SamplingParams(), seeds=[1], chat=True)


@pytest.mark.parametrize("faults", [["429"], ["500", "500"], ["hang"]])
def test_transient_faults_are_retried(stub, faults):
    stub.script = list(faults)
    gens = backend(stub).generate(["x"], SamplingParams(), seeds=[0])
    assert gens[0].text == "echo x seed=0"
    assert len(stub.bodies) == len(faults) + 1


@pytest.mark.parametrize("faults, words", [(["500"] * 3, "no answer after 3 attempts"),
                                           (["garbage"], "not JSON"), (["nochoices"], "malformed reply"),
                                           (["404"], "check the model name")])
def test_failures_are_one_clear_error(stub, faults, words):
    stub.script = list(faults)
    with pytest.raises(BackendError, match=words):
        backend(stub).generate(["x"], SamplingParams(), seeds=[0])


def test_refused_connection_and_missing_url(stub, monkeypatch):
    port = stub.server.server_address[1]
    stub.server.shutdown()
    stub.server.server_close()
    with pytest.raises(BackendError, match="is the server running"):
        make_backend("openai", model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1,
                     backoff_s=0.01).generate(["x"], SamplingParams(), seeds=[0])
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(BackendError, match="OPENAI_BASE_URL"):
        make_backend("openai", model="m")


def test_list_models(stub):
    assert backend(stub).list_models() == ["stub-model"]

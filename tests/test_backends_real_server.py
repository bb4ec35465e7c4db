"""The openai backend against a REAL OpenAI-compatible server: ``transformers serve`` on CPU serving
the packaged model's HF folder on a free loopback port (slow: a model load and a handful of short
requests). S3FT self-answers through the server name the backend and the server's model in every
row; with the server down the step stops with one StepFailed and the same run finishes once it is up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("torch")
pytest.importorskip("fastapi", reason="transformers serve needs the serve extra (make setup installs it)")
pytest.importorskip("uvicorn", reason="transformers serve needs the serve extra (make setup installs it)")

from selfaug_compiler.errors import StepFailed  # noqa: E402
from selfaug_compiler.recipe.schema import ModelSpec, S3ftParams  # noqa: E402
from tests.test_augment_steps import SHORT, recipe_for, rows_of, run_until_mix  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, model: Path, port: int, tmp: Path) -> None:
        exe = Path(sys.executable).with_name("transformers")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_CACHE": str(tmp / "hub")}
        (tmp / "hub").mkdir(exist_ok=True)
        self.log = open(tmp / "serve.log", "w")
        self.proc = subprocess.Popen([str(exe), "serve", str(model), "--host", "127.0.0.1", "--port", str(port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(1)
        self.stop()
        pytest.fail("transformers serve did not start: " + (tmp / "serve.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        self.log.close()


def test_s3ft_self_answers_through_transformers_serve(tmp_path):
    if shutil.which("transformers", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("no transformers CLI next to this python")
    from selfaug_compiler.models.cache import converted_packaged_model

    model = converted_packaged_model("smollm2-135m-instruct")
    root = tmp_path / "w"
    root.mkdir()
    with open(root / "toy.jsonl", "w") as f:
        for i, (a, b) in enumerate([(1, 2), (3, 4), (5, 6)]):
            f.write(json.dumps({"id": f"q{i}", "question": f"What is {a} + {b}?", "answer": f"#### {a + b}"}) + "\n")
    port = free_port()
    recipe = recipe_for(root, S3ftParams(answer=SHORT, paraphrase=SHORT), "served")
    backend = {"kind": "openai", "served_model": str(model), "base_url": f"http://127.0.0.1:{port}/v1",
               "max_retries": 1, "backoff_s": 0.1, "request_timeout_s": 120}
    recipe = recipe.model_copy(update={"model": ModelSpec(ref="packaged:smollm2-135m-instruct", backend=backend)})
    store = tmp_path / "store.duckdb"
    with pytest.raises(StepFailed, match="is the server running"):
        run_until_mix(root, recipe, store)  # nothing listens yet: one clear failure, ingest kept
    server = Served(model, port, tmp_path)
    try:
        _, summary = run_until_mix(root, recipe, store)
    finally:
        server.stop()
    answers = rows_of(store, summary, "judge.self_answer")
    assert len(answers) == 3 and len({r["key"] for r in answers}) == 3
    for r in answers:
        meta = json.loads(r["meta"])
        assert meta["backend"]["backend"] == "openai" and meta["backend"]["batch_invariant"] is False
        assert meta["backend"]["served_model"].startswith(str(model))
        assert meta["finish_reason"] in ("stop", "length") and r["response_tokens"] > 0

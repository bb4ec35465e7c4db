"""The openai backend against a real server: ``transformers serve`` (extra ``serve``) on a free
loopback port serving the packaged model's HF folder. S3FT's data steps (self-answers, the numeric
judge, paraphrases of the rejected) run through ``selfaug run``; ``selfaug validate --online``
accepts the server; the server is killed after the
first batch of self-answers: exit 1 with one message naming the staged rows, the batch kept; the
server restarted, the same command finishes with every row once and asks only for the rest; then
``selfaug eval --backend openai`` scores the base model on a small generation benchmark on that server;
a judge on a second model: a tiny model's self-answers judged by the served model; last, the same
recipe on the in-process engine gives the served rows' text and verdicts.

Slow (about a minute on 2 CPU cores: two server starts, a handful of 8-token requests)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from selfaug_compiler.models.cache import converted_packaged_model  # noqa: E402
from selfaug_compiler.recipe.loader import load_recipe  # noqa: E402
from tests.test_augment_steps import rows_of, run_until_mix  # noqa: E402

QUESTIONS = [("Tom has 2 apples and buys 3 more. How many apples now?", "#### 5"),
             ("A box holds 4 pens. How many pens are in 2 boxes?", "#### 8"),
             ("What is 10 minus 7?", "#### 3"),
             ("What is 6 plus 6?", "#### 12")]
BIN = Path(sys.executable).parent
REQUEST_DONE = re.compile(r'"POST /v1/chat/completions HTTP/1\.1" 200')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``transformers serve FOLDER`` on 127.0.0.1:port, its log in a file."""

    def __init__(self, folder: Path, port: int, log: Path):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(log.parent / "hub")}
        self.log = log
        self.proc = subprocess.Popen(
            [str(BIN / "transformers"), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port),
             "--device", "cpu", "--dtype", "float32", "--log-level", "info"],
            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, log.read_text()[-2000:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"transformers serve did not listen within 180 s:\n{log.read_text()[-2000:]}")

    def done_requests(self) -> int:
        return len(REQUEST_DONE.findall(self.log.read_text()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def write_recipe(root: Path, folder: Path, port: int | None, name: str = "served.yaml") -> Path:
    """The S3FT recipe on the server at ``port``; ``port=None``: the same recipe on the in-process engine."""
    with open(root / "toy.jsonl", "w") as f:
        for i, (q, a) in enumerate(QUESTIONS):
            f.write(json.dumps({"id": f"q{i}", "question": q, "answer": a}) + "\n")
    recipe = {
        "name": "served-test", "seed": 7,
        "model": {"ref": str(folder), "dtype": "float32"},
        "task": {"name": "toy", "source": {"kind": "file", "path": "toy.jsonl"}, "answer_type": "number",
                 "fields": {"prompt": "question", "response": "answer", "id": "id"}},
        "augment": {"method": "s3ft", "answer": {"temperature": 0.0, "max_new_tokens": 8},
                    "paraphrase": {"temperature": 0.0, "max_new_tokens": 8}},
        "execution": {"device": "cpu", "generate_batch_size": 2},
    }
    if port is not None:
        recipe["model"]["backend"] = {"kind": "openai", "served_model": str(folder), "base_url": f"http://127.0.0.1:{port}/v1",
                                      "max_concurrency": 2, "max_retries": 1, "backoff_s": 0.2, "request_timeout_s": 60}
    path = root / name
    path.write_text(json.dumps(recipe))
    return path


def judge_on_server(root: Path, folder: Path, port: int) -> Path:
    """The S3FT recipe on a tiny random model in-process, its model judge on the server's model."""
    from tests.tiny_models import build_tiny_model

    recipe = json.loads(write_recipe(root, folder, None, "judged.yaml").read_text())
    recipe["model"] = {"ref": str(build_tiny_model(root / "tiny")), "dtype": "float32"}
    recipe["augment"]["accept_truncated"] = True  # the tiny model's replies run to the limit: judge them anyway
    recipe["augment"]["judge"] = {"kind": "model", "model": {
        "ref": str(folder), "backend": {"kind": "openai", "served_model": str(folder), "max_retries": 1,
                                        "base_url": f"http://127.0.0.1:{port}/v1", "request_timeout_s": 60}}}
    path = root / "judged.yaml"
    path.write_text(json.dumps(recipe))
    return path


def selfaug_run(recipe: Path, store: Path, *, kill: Server | None = None, after: int = 0):
    """``selfaug run RECIPE --until mix``; with ``kill``, that server is killed once it finished ``after`` requests."""
    cmd = [str(BIN / "selfaug"), "run", str(recipe), "--until", "mix", "--store", str(store)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    if kill is not None:
        while proc.poll() is None and kill.done_requests() < after:
            time.sleep(0.02)
        kill.stop()
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def test_s3ft_data_steps_on_transformers_serve_kill_and_resume(tmp_path):
    folder = converted_packaged_model("smollm2-135m-instruct")
    port = free_port()
    recipe = write_recipe(tmp_path, folder, port)
    store = tmp_path / "store.duckdb"

    first = Server(folder, port, tmp_path / "serve1.log")
    try:
        rc, out = selfaug_run(recipe, store, kill=first, after=2)  # the first batch of 2 self-answers
    finally:
        first.stop()
    assert rc == 1, out
    assert "generate.self_answer" in out and "no answer after 2 attempts" in out, out
    assert "2 rows of this attempt are staged" in out, out
    assert "Traceback" not in out, out

    second = Server(folder, port, tmp_path / "serve2.log")
    try:
        # its GET /models answers 500 (no HF hub cache here): --online asks for 1 token of the model instead
        check = subprocess.run([str(BIN / "selfaug"), "validate", "--online", str(recipe)], capture_output=True,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_CACHE": str(tmp_path / "hub")})
        assert check.returncode == 0, check.stdout + check.stderr
        rc, out = selfaug_run(recipe, store)
        asked = second.done_requests() - 1  # less validate's 1-token request
        # the base model evaluated on the server (selfaug eval --backend openai; evaluate/eval_backend.py)
        bench = tmp_path / "gen.jsonl"
        bench.write_text("".join(json.dumps({"prompt": q, "answer": a.split()[-1]}) + "\n" for q, a in QUESTIONS))
        ev = subprocess.run([str(BIN / "selfaug"), "eval", str(folder), "-b", str(bench), "--dtype", "float32",
                             "--device", "cpu", "--no-cache", "--format", "json", "--max-new-tokens", "8",
                             "--backend", "openai", "--served-model", str(folder),
                             "--base-url", f"http://127.0.0.1:{port}/v1"],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        evaluated = second.done_requests() - 1 - asked
        # a judge on a second model: self-answers and paraphrases from a tiny model in-process, the
        # verdicts from the packaged model on the server
        judged_store, judge_recipe = tmp_path / "judged.duckdb", judge_on_server(tmp_path, folder, port)
        before = second.done_requests()
        _, judged_run = run_until_mix(tmp_path, load_recipe(judge_recipe).recipe, judged_store)
        judge_requests = second.done_requests() - before
    finally:
        second.stop()
    assert rc == 0, out
    assert ev.returncode == 0, ev.stdout + ev.stderr
    gen = json.loads(ev.stdout)["gen"]
    assert gen["n"] == len(QUESTIONS) and evaluated == len(QUESTIONS)
    assert gen["backend"]["backend"] == "openai" and gen["backend"]["model"] == str(folder)

    # read the rows through the same plan in-process: every step is cached now, nothing is asked
    _, summary = run_until_mix(tmp_path, load_recipe(recipe).recipe, store)
    assert not summary.ran
    answers = rows_of(store, summary, "judge.self_answer")
    paraphrases = rows_of(store, summary, "generate.paraphrase")
    assert sorted(r["key"] for r in answers) == sorted({r["key"] for r in answers}) and len(answers) == len(QUESTIONS)
    # the restarted server was asked only for the 2 self-answers not staged, then the paraphrases
    assert asked == 2 + len(paraphrases), (asked, len(paraphrases))
    for r in answers:
        backend = json.loads(r["meta"])["backend"]
        assert backend["backend"] == "openai" and backend["model"] == str(folder) and backend["batch_invariant"] is False
        assert backend["served_model"].startswith(str(folder))  # transformers serve answers "<folder>@main"
        assert r["response_tokens"] <= 8 and r["judge_verdict"] in ("pass", "fail")

    # the same recipe on the in-process engine: greedy decoding gives the same text, so the same verdicts
    # (on the lab's 400 SST-2 self-answers at 256 tokens, served and engine replies were identical, 400 of 400)
    _, local = run_until_mix(tmp_path, load_recipe(write_recipe(tmp_path, folder, None, "local.yaml")).recipe,
                             tmp_path / "local.duckdb")
    engine = {r["key"]: r for r in rows_of(tmp_path / "local.duckdb", local, "judge.self_answer")}
    assert {r["key"]: (r["response"], r["judge_verdict"]) for r in answers} == \
        {k: (r["response"], r["judge_verdict"]) for k, r in engine.items()}
    assert all("backend" not in json.loads(r["meta"]) for r in engine.values())  # no meta.backend: transformers

    # the judge on the server: every self-answer and paraphrase was judged there, and each row says so
    judged = [*rows_of(judged_store, judged_run, "judge.self_answer"), *rows_of(judged_store, judged_run, "judge.paraphrase")]
    assert len(judged) == judge_requests >= len(QUESTIONS)
    for r in judged:
        meta = json.loads(r["meta"])
        assert "backend" not in meta and r["judge_name"] == "model" and r["judge_raw"]
        assert meta["judge_model"]["backend"] == "openai" and meta["judge_model"]["served_model"].startswith(str(folder))

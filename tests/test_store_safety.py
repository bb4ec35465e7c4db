"""Crash safety and the one-writer lock, with real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.store import open_store

COMMITTER = textwrap.dedent("""
    import sys, pyarrow as pa
    from selfaug_compiler.store import open_store
    path, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    table = pa.table({"key": [f"{seed}-{i}" for i in range(n)],
                      "prompt": [f"prompt {seed} {i} " + "word " * 20 for i in range(n)],
                      "response": [f"response {i} " + "text " * 30 for i in range(n)]})
    store = open_store(path, wait_s=30)
    print("committing", flush=True)
    store.commit("big", table, message=seed)
    store.close()
    print("done", flush=True)
""")

HOLDER = textwrap.dedent("""
    import sys, time
    from selfaug_compiler.store import open_store
    store = open_store(sys.argv[1])
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    store.close()
""")


def _spawn(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _versions(path) -> list[str]:
    with open_store(path, read_only=True, wait_s=30) as s:
        report = s.verify()
        assert report.ok, report.problems
        return [v.id for v in s.log("big")] if s.datasets() else []


def test_kill_9_mid_commit_leaves_before_or_after(tmp_path):
    path = tmp_path / "store.duckdb"
    with open_store(path) as s:
        s.commit("big", [{"key": "seed", "prompt": "p", "response": "r"}])
    killed_while_running = 0
    for attempt, delay in enumerate((0.3, 0.8, 1.5, 2.5, 4.0)):
        before = _versions(path)
        proc = _spawn(COMMITTER, path, f"attempt{attempt}", 150_000)
        assert proc.stdout.readline().strip() == "committing", proc.stderr.read()
        time.sleep(delay)
        if proc.poll() is None:
            killed_while_running += 1
        proc.send_signal(signal.SIGKILL)  # kill -9 (a no-op if it already finished)
        proc.wait()
        after = _versions(path)
        assert after == before or (after[:-1] == before and len(after) == len(before) + 1)
    assert killed_while_running >= 2  # the test really interrupted commits


def test_second_writer_gets_a_clear_error(tmp_path):
    path = tmp_path / "store.duckdb"
    open_store(path).close()
    holder = _spawn(HOLDER, path, 3)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(SelfaugError, match=rf"in use by another process \(pid {holder.pid}: python -c …\)"):
            open_store(path, wait_s=0.5)
        assert time.monotonic() - t0 >= 0.5
        with pytest.raises(SelfaugError, match="in use"):
            open_store(path, read_only=True, wait_s=0)
    finally:
        holder.kill()
        holder.wait()


def test_second_writer_waits_for_the_first(tmp_path, monkeypatch):
    path = tmp_path / "store.duckdb"
    open_store(path).close()
    holder = _spawn(HOLDER, path, 1.0)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("SELFAUG_STORE_WAIT", "30")
        t0 = time.monotonic()
        with open_store(path) as s:  # waits (SELFAUG_STORE_WAIT), then gets the lock
            s.commit("ds", [{"key": "a", "prompt": "p"}])
        assert time.monotonic() - t0 >= 0.5
    finally:
        holder.wait(timeout=30)

"""Helpers for the hostile store and data corpus: the real CLI in a subprocess, real faults.

Faults are made for real, never mocked: a small tmpfs for a full disk, a read-only bind mount
or ``chattr +i`` for a read-only folder (both need root, as CI has; the tests skip otherwise),
truncated and overwritten bytes for a damaged store file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

TIME_LIMIT_S = 10.0  # python start-up included


@dataclass
class Result:
    code: int
    output: str  # stdout + stderr
    seconds: float
    stdout: str = ""  # alone: what --format json writes (data commands name their store on stderr)


def selfaug(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    environment = {k: v for k, v in os.environ.items() if k != "SELFAUG_STORE"}
    environment.update({"OMP_NUM_THREADS": "1", "SELFAUG_STORE_WAIT": "1", **(env or {})})
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "selfaug_compiler", *args], capture_output=True, text=True,
                          cwd=cwd, env=environment, timeout=timeout)
    return Result(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start, proc.stdout)


def assert_clean(result: Result, code: int, *words: str, limit_s: float = TIME_LIMIT_S) -> None:
    """The expected exit code, no traceback, in time, and the cause named."""
    assert "Traceback" not in result.output, result.output
    assert result.code == code, result.output
    assert result.seconds < limit_s, f"{result.seconds:.1f} s\n{result.output}"
    for word in words:
        assert word in result.output, result.output


def assert_verifies(store: Path, cwd: Path) -> None:
    result = selfaug("data", "--store", str(store), "verify", cwd=cwd)
    assert_clean(result, 0, "ok:")


def write_rows(path: Path, n: int, *, pad: int = 0, key: str = "id") -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({key: f"k{i}", "question": f"what is {i} + 1? {'x' * pad}", "answer": str(i + 1)}) + "\n")
    return path


def _root_or_skip(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root")


def _run_or_skip(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot {what}: {done.stderr.decode().strip()}")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real small filesystem at ``path`` (a full disk once ``size`` is used)."""
    _root_or_skip("mounting a tmpfs")
    path.mkdir(parents=True, exist_ok=True)
    _run_or_skip(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], "mount a tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only_view(source: Path, view: Path) -> Iterator[Path]:
    """``source`` seen read-only at ``view`` (a read-only bind mount: EROFS even for root)."""
    _root_or_skip("a read-only bind mount")
    view.mkdir(parents=True, exist_ok=True)
    _run_or_skip(["mount", "--bind", str(source), str(view)], "bind-mount")
    try:
        _run_or_skip(["mount", "-o", "remount,bind,ro", str(view)], "remount read-only")
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


@contextlib.contextmanager
def immutable(folder: Path) -> Iterator[Path]:
    """``folder`` with the immutable attribute (no new files, e.g. DuckDB's .wal, even for root)."""
    _root_or_skip("chattr +i")
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    _run_or_skip(["chattr", "+i", str(folder)], "chattr +i")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)

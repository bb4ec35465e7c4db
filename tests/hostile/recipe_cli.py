"""Helpers for the hostile-recipe corpus: a small project on disk and the real CLI in a subprocess.

Every hostile case must end in one clean refusal: exit 2, no traceback, well within the time
limit, and a message naming the cause (never the content of a file it should not read).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
# Python start-up and the CLI's imports included, on a machine other jobs may share: a refusal
# takes well under a second of its own (the template deadline is 1 s); a hang is minutes.
TIME_LIMIT_S = 10.0
SECRET = "s3cr3t-TOKEN-do-not-print"

BASE = """\
name: hostile
task:
  name: gsm8k
  source: {kind: packaged, name: gsm8k}
  answer_type: number
  split: {train: 20, heldout: 4}
eval: {retention: [arc_easy], limit: 10}
model: {ref: "packaged:smollm2-135m-instruct"}
"""


@dataclass
class Result:
    code: int
    output: str
    seconds: float


def project(tmp_path: Path) -> Path:
    """``tmp_path/proj`` (a project: it holds ``.git``) and, outside it, a secret file."""
    proj = tmp_path / "proj"
    (proj / ".git").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text(f"password: {SECRET}\n{{{{ {SECRET} }}}}\n")
    return proj


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def selfaug(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    environment = {k: v for k, v in os.environ.items() if k != "SELFAUG_ALLOW_OUTSIDE_PATHS"}
    environment.update({"OMP_NUM_THREADS": "1", "SELFAUG_STORE": str(cwd / "store.duckdb"), **(env or {})})
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "selfaug_compiler", *args], capture_output=True, text=True,
                          cwd=cwd, env=environment, timeout=60)
    return Result(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start)


def assert_refused(result: Result, *words: str) -> None:
    """Exit 2, no traceback, in time, the cause named, no secret printed."""
    assert "Traceback" not in result.output, result.output
    assert result.code == 2, result.output
    assert result.seconds < TIME_LIMIT_S, f"{result.seconds:.1f} s\n{result.output}"
    for word in words:
        assert word in result.output, result.output
    assert SECRET not in result.output, result.output

"""The cheap commands never import torch or transformers (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

PROGRAM = """
import sys
from selfaug_compiler.cli import main
code = main(sys.argv[1:])
heavy = [m for m in ("torch", "transformers") if m in sys.modules]
assert not heavy, f"imported {heavy}"
print("exit", code)
"""


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("args,code", [
    (["validate", "recipes/default.yaml", "recipes/s3ft.yaml", "recipes/continual.yaml"], 0),
    (["validate", "--format", "json", "recipes/replay.yaml"], 0),
    (["validate", "tests/bad_recipes/unknown_key.yaml"], 2),
    (["schema"], 0),
])
def test_cheap_commands_stay_light(args: list[str], code: int) -> None:
    proc = run(args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"exit {code}")


def test_compile_and_plan_diff_stay_light(tmp_path: Path) -> None:
    for name in ("a", "b"):
        proc = run(["compile", "recipes/sdft.yaml", "-o", str(tmp_path / name), "--set", f"augment.seed={len(name) + ord(name)}"])
        assert proc.returncode == 0 and proc.stdout.strip().endswith("exit 0"), proc.stderr
    proc = run(["plan", "diff", str(tmp_path / "a"), str(tmp_path / "b")])
    assert proc.returncode == 0 and "~ generate.rewrite" in proc.stdout, proc.stderr


def test_data_help_stays_light() -> None:
    proc = run(["data", "--help"])
    if "No such command" in proc.stderr:
        pytest.skip("the data commands are not registered yet")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("exit 0"), proc.stderr

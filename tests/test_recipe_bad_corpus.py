"""Every bad recipe in tests/bad_recipes/ exits 2 with one clear message naming its line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from selfaug_compiler.cli import main

BAD = Path(__file__).parent / "bad_recipes"

# file -> (line the message must name, words it must contain)
CASES = {
    "malformed.yaml": (4, "not valid YAML"),
    "empty.yaml": (1, "recipe is empty"),
    "top_list.yaml": (1, "must be a mapping"),
    "binary.yaml": (2, "not UTF-8"),
    "wrong_type.yaml": (6, "train.lr"),
    "unknown_key.yaml": (7, "did you mean `lr`"),
    "typo_key.yaml": (8, "did you mean `temperature`"),
    "bad_method.yaml": (6, "did you mean `sa_sft`"),
    "missing_field.yaml": (3, "task.source"),
    "missing_data.yaml": (4, "does_not_exist.jsonl"),
    "missing_extends.yaml": (1, "no_such_base.yaml"),
    "cycle_a.yaml": (1, "cycle"),
    "missing_model.yaml": (1, "names no base model"),  # a forgotten model: must not train the default
}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_every_corpus_file_has_a_case() -> None:
    files = {p.name for p in BAD.glob("*.yaml")} - {"cycle_b.yaml", "bad_set.yaml"}
    assert files == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_recipe_exits_2_naming_the_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    line, words = CASES[name]
    code, output = run_cli(["validate", str(BAD / name)], capsys)
    assert code == 2
    assert "Traceback" not in output
    assert words in output
    errors = [ln for ln in output.splitlines() if re.search(r": error: ", ln)]
    assert len(errors) == 1, output  # one clear message
    assert re.search(rf"\.yaml:{line}(:\d+)?: error", errors[0]), errors[0]


def test_bad_set_names_the_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(["validate", str(BAD / "bad_set.yaml"), "--set", "train.lr=[1, 2"], capsys)
    assert code == 2
    assert "--set train.lr=[1, 2" in output and "not valid YAML" in output


def test_set_value_is_validated_like_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(["validate", str(BAD / "bad_set.yaml"), "--set", "train.lr=fast"], capsys)
    assert code == 2
    assert "--set train.lr=fast: error: train.lr" in output


def test_bad_set_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(["validate", str(BAD / "bad_set.yaml"), "--set", "train.lr"], capsys)
    assert code == 2 and "KEY.PATH=VALUE" in output


def test_missing_recipe_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, output = run_cli(["validate", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "does not exist" in output


def test_console_script_prints_no_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "selfaug_compiler", "validate", str(BAD / "binary.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "binary.yaml:2" in proc.stderr

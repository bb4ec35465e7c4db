"""`validate` reports every mistake of a recipe at once, sorted by line, each with a hint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from selfaug_compiler.cli import main
from selfaug_compiler.compile.validation import validate_recipe

THREE = """\
name: three
task:
  name: sst2
  source: {kind: packaged, name: sst2}
  answer_type: choice
  split: {train: 100, heldout: 20}
augment:
  method: s3fft
train:
  method: full
  lr: fast
eval:
  retention: [arc_easy, sciqq]
model: {ref: "packaged:smollm2-135m-instruct"}
"""

# five mixed mistakes: a packaged-data typo (a check), an unknown key, a list for a number,
# a number for a mapping, text for a whole number (schema)
FIVE = """\
name: five
task:
  name: sst2
  source: {kind: packaged, name: sst3}
  answer_type: choice
  split: {train: 100, heldout: 20}
train:
  max_lenght: 256
  epochs: [1, 2]
  lora: 8
eval:
  retention: [arc_easy]
  limit: ten
model: {ref: "packaged:smollm2-135m-instruct"}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def _text_problems(err: str) -> list[tuple[int, str, str | None]]:
    """(line, field, hint) of each error block that `validate` printed."""
    out = []
    for block in re.split(r"\n(?=\S)", err.strip()):
        head = re.match(r".*?:(\d+):\d+: error: ([\w.]+): ", block)
        if head:
            hint = re.search(r"^  hint: +(.+)$", block, re.M)
            out.append((int(head.group(1)), head.group(2), hint.group(1) if hint else None))
    return out


@pytest.mark.parametrize("text,expected", [
    (THREE, [(8, "augment.method", "did you mean `s3ft`?"),
             (11, "train.lr", "write a number without quotes or units, e.g. `lr: 1e-4`"),
             (13, "eval.retention.1", "did you mean `sciq`?")]),
    (FIVE, [(4, "task.source.name", "did you mean `sst2`?"),
            (8, "train.max_lenght", "did you mean `max_length`?"),
            (9, "train.epochs", "write a number without quotes or units, e.g. `epochs: 2`"),
            (10, "train.lora", None),
            (13, "eval.limit", None)]),
], ids=["three", "five"])
def test_every_mistake_in_line_order_with_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 text: str, expected: list) -> None:
    path = _write(tmp_path, text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    found = _text_problems(err)
    assert [(line, field) for line, field, _ in found] == [(line, field) for line, field, _ in expected]
    for (_, _, hint), (_, _, want) in zip(found, expected):
        assert hint and (want is None or hint == want)
    assert f"INVALID ({len(expected)} errors)" in err

    assert main(["validate", "--format", "json", str(path)]) == 2
    (result,) = json.loads(capsys.readouterr().out)
    errors = [p for p in result["problems"] if p["severity"] == "error"]
    assert [(p["line"], p["field"]) for p in errors] == [(line, field) for line, field, _ in expected]
    assert all(p["hint"] and p["expected"] for p in errors) and not result["ok"]


def test_type_hints_say_what_to_write(tmp_path: Path) -> None:
    problems = {p.field: p for p in validate_recipe(_write(tmp_path, FIVE)).problems}
    assert problems["train.lora"].hint.startswith("`lora` holds settings (r, alpha, dropout, target_modules, load_in_4bit)")
    assert problems["eval.limit"].expected.startswith("a whole number such as")
    assert problems["train.epochs"].expected == "a number such as 2"


def test_checks_about_values_taken_out_are_not_reported(tmp_path: Path) -> None:
    """A misspelt judge kind falls back to the default (numeric) for the other checks; the check
    that a numeric judge does not fit a choice task is about that default, so it is not reported."""
    text = THREE.replace("method: s3fft", "method: s3ft\n  judge: {kind: chioce}")
    found = validate_recipe(_write(tmp_path, text))
    judge = [p for p in found.problems if p.field == "augment.judge.kind"]
    assert len(judge) == 1 and judge[0].hint == "did you mean `choice`?"
    assert [p.field for p in found.problems if p.severity == "error"] == ["augment.judge.kind", "train.lr",
                                                                           "eval.retention.1"]


def test_unrepairable_recipe_still_reports_its_schema_errors(tmp_path: Path) -> None:
    """Without `name` there is no recipe to check: the schema errors are all that is reported."""
    text = THREE.replace("name: three\n", "").replace("  lr: fast\n", "  lr: fast\n  warmup_ratio: lots\n")
    found = validate_recipe(_write(tmp_path, text))
    assert [p.field for p in found.problems] == ["name", "augment.method", "train.lr", "train.warmup_ratio"]
    assert all(p.hint for p in found.problems)


def test_set_overrides_sort_after_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, THREE.replace("s3fft", "none").replace("lr: fast", "lr: 1e-4"))
    found = validate_recipe(path, ["train.epochs=many"])
    assert [p.field for p in found.problems if p.severity == "error"] == ["eval.retention.1", "train.epochs"]
    assert found.problems[-1].location.file == "--set train.epochs=many"

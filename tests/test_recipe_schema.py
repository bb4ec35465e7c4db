"""`selfaug schema` and the recipes in recipes/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from selfaug_compiler.cli import main
from selfaug_compiler.compile.checks import check_recipe
from selfaug_compiler.recipe.located import to_plain
from selfaug_compiler.recipe.loader import load_recipe

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))
REQUIRED = {"default", "sft", "lora", "sa_sft", "s3ft", "sdft", "replay", "freeze", "continual"}


def schema_json(capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["schema"]) == 0
    return json.loads(capsys.readouterr().out)


def test_schema_marks_speed_fields(capsys: pytest.CaptureFixture[str]) -> None:
    schema = schema_json(capsys)
    text = json.dumps(schema)
    assert '"x-affects": "speed"' in text
    execution = schema["$defs"]["ExecutionSpec"]["properties"]
    assert execution["micro_batch_size"]["x-affects"] == "speed"
    assert "x-affects" not in schema["$defs"]["TrainSpec"]["properties"]["lr"]
    assert schema["additionalProperties"] is False and "extends" in schema["properties"]


def test_all_recipes_exist_and_validate() -> None:
    assert REQUIRED <= {p.stem for p in RECIPES}
    for path in RECIPES:
        report = check_recipe(load_recipe(path))
        assert report.ok, (path, [p.render() for p in report.errors])


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_files_match_the_json_schema(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each file (as written) and each merged recipe against the published schema."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    schema = schema_json(capsys)
    merged = to_plain(load_recipe(path).tree)
    jsonschema.validate(merged, schema)


def test_recipe_keys_are_schema_properties(capsys: pytest.CaptureFixture[str]) -> None:
    """Without jsonschema: every top-level and section key of every file is declared in the schema."""
    schema = schema_json(capsys)
    props = schema["properties"]
    for path in RECIPES:
        data = yaml.safe_load(path.read_text())
        assert set(data) <= set(props), path
        for section in ("model", "train", "eval", "execution"):
            if isinstance(data.get(section), dict):
                ref = props[section].get("$ref") or props[section]["allOf"][0]["$ref"]
                declared = schema["$defs"][ref.rsplit("/", 1)[1]]["properties"]
                assert set(data[section]) <= set(declared), (path, section)

"""Static checks behind `selfaug validate`: data, fields, templates, model, method/task fit, budget."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from selfaug_compiler.cli import main
from selfaug_compiler.compile.checks import check_recipe
from selfaug_compiler.compile.model_info import read_gguf_metadata, read_model_info
from selfaug_compiler.compile.model_checks import parse_layers
from selfaug_compiler.recipe.loader import load_recipe

ROWS = [{"q": f"What is {i} + {i}?", "a": f"{i} + {i} = {2 * i}. #### {2 * i}", "uid": i} for i in range(8)]


def make_model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 300, "max_position_embeddings": 1024,
    }))
    return folder


def recipe_text(source: str, extra: str = "") -> str:
    return f"""\
name: t
model: {{ref: tiny}}
task:
  name: adds
  source: {source}
  fields: {{prompt: q, response: a, id: uid}}
  answer_type: number
  split: {{train: 6, heldout: 2}}
train: {{max_length: 128}}
{extra}"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    make_model_dir(tmp_path)
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return tmp_path


def check(workdir: Path, text: str, overrides: list[str] | None = None):
    path = workdir / "r.yaml"
    path.write_text(text)
    return check_recipe(load_recipe(path, overrides))


def messages(report) -> list[str]:
    return [f"{p.field}: {p.message} ({p.hint})" for p in report.errors]


def test_valid_local_recipe_has_no_errors_and_a_budget(workdir: Path) -> None:
    report = check(workdir, recipe_text("{kind: file, path: data.jsonl}", "augment: {method: sa_sft}\n"))
    assert report.ok, messages(report)
    assert report.model is not None and report.model.num_layers == 2
    b = report.budget
    assert b["rows_to_generate"] == 3  # sa_sft default ratio 0.5 x 6 train rows
    assert b["tokens_to_generate"] == 3 * 256 * 2
    assert b["tokens_to_train"] > 0 and b["memory"]["train_gib"] > 0


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_other_file_formats_are_read(workdir: Path, fmt: str) -> None:
    path = workdir / f"data.{fmt}"
    if fmt == "csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["q", "a", "uid"])
            writer.writeheader()
            writer.writerows(ROWS)
    elif fmt == "json":
        path.write_text(json.dumps(ROWS))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert check(workdir, recipe_text(f"{{kind: file, path: data.{fmt}}}")).ok
    bad = check(workdir, recipe_text(f"{{kind: file, path: data.{fmt}}}"), ["task.fields.prompt=question"])
    assert any("no field `question`" in m for m in messages(bad))


def test_missing_field_suggests_the_column_and_names_the_line(workdir: Path) -> None:
    report = check(workdir, recipe_text("{kind: file, path: data.jsonl}"), ["task.fields.response=aa"])
    (problem,) = report.errors
    assert problem.field == "task.fields.response" and problem.hint == "did you mean `a`?"
    assert problem.location.file == "--set task.fields.response=aa"


def test_unknown_packaged_name_and_benchmark(workdir: Path) -> None:
    report = check(workdir, recipe_text("{kind: packaged, name: gsm8kk}", "eval: {retention: [arc_esy]}\n"))
    hints = [p.hint for p in report.errors]
    assert "did you mean `gsm8k`?" in hints and "did you mean `arc_easy`?" in hints
    arc = next(p for p in report.errors if p.field == "eval.retention.0")
    assert arc.location.line == 10


def test_template_with_undefined_variable_fails(workdir: Path) -> None:
    (workdir / "mine.j2").write_text("{{ prompt }} and {{ not_a_variable }}")
    report = check(workdir, recipe_text("{kind: file, path: data.jsonl}", "augment: {method: sdft, template: mine.j2}\n"))
    (problem,) = report.errors
    assert problem.field == "augment.template" and "not_a_variable" in problem.message


def test_sandbox_blocks_attribute_escape(workdir: Path) -> None:
    (workdir / "evil.j2").write_text("{{ prompt.__class__.__mro__[1].__subclasses__() }}")
    report = check(workdir, recipe_text("{kind: file, path: data.jsonl}", "augment: {method: sdft, template: evil.j2}\n"))
    assert report.errors and "does not render" in report.errors[0].message


def test_missing_template(workdir: Path) -> None:
    report = check(workdir, recipe_text("{kind: file, path: data.jsonl}", "augment: {method: sdft, template: nope.j2}\n"))
    assert [p.field for p in report.errors] == ["augment.template"]


def test_model_checks(workdir: Path) -> None:
    text = recipe_text("{kind: file, path: data.jsonl}")
    too_long = check(workdir, text, ["train.max_length=2048"])
    assert [p.field for p in too_long.errors] == ["train.max_length"]
    lora = check(workdir, text, ["train.method=lora", "train.lora.target_modules=[q_proj, qproj2]"])
    assert [p.field for p in lora.errors] == ["train.lora.target_modules.1"]
    freeze = check(workdir, text, ["train.method=freeze", "train.freeze.layers=0-3"])
    assert "layer indices [2, 3] do not exist" in freeze.errors[0].message
    assert check(workdir, text, ["train.method=freeze", "train.freeze.layers=[1]"]).ok


def test_unresolvable_model(workdir: Path) -> None:
    report = check(workdir, recipe_text("{kind: file, path: data.jsonl}"), ["model.ref=./nowhere"])
    assert [p.field for p in report.errors] == ["model.ref"]


def test_method_must_fit_the_task(workdir: Path) -> None:
    text = recipe_text("{kind: file, path: data.jsonl}", "augment: {method: s3ft, judge: {kind: code_exec}}\n")
    (problem,) = check(workdir, text).errors
    assert problem.field == "augment.judge.kind" and "answer_type code" in problem.message
    assert check(workdir, text, ["augment.judge.kind=numeric"]).ok
    text_task = check(workdir, text, ["augment.judge.kind=numeric", "task.answer_type=text"])
    assert "answer_type number" in text_task.errors[0].message


def test_packaged_model_metadata_from_gguf_header() -> None:
    info = read_model_info("packaged:smollm2-135m-instruct")
    assert (info.architecture, info.num_layers, info.context_length) == ("llama", 30, 8192)
    assert (info.hidden_size, info.num_heads, info.num_kv_heads, info.vocab_size) == (576, 9, 3, 49152)
    assert 130e6 < info.approx_params() < 140e6
    assert read_gguf_metadata(info.path)["general.architecture"] == "llama"


def test_parse_layers() -> None:
    assert parse_layers("0,2,4-6") == [0, 2, 4, 5, 6]
    assert parse_layers([3, 1, 3]) == [1, 3]
    with pytest.raises(ValueError):
        parse_layers("5-2")


def test_validate_json_and_github_formats(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = workdir / "r.yaml"
    path.write_text(recipe_text("{kind: file, path: data.jsonl}", "augment: {method: sa_sft}\n"))
    assert main(["validate", str(path), "--format", "json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["budget"]["rows_to_generate"] == 3 and result["model"]["num_layers"] == 2
    assert main(["validate", str(path), "--format", "github", "--set", "train.max_length=4096"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("::error file=--set train.max_length=4096::train.max_length:")

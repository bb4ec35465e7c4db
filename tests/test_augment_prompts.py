"""Prompt templates: lookup order, strict rendering, hashes, and every built-in template renders."""

from __future__ import annotations

import hashlib

import pytest

from selfaug_compiler.augment.prompts import builtin_templates_dir, find_template, render, template_hash
from selfaug_compiler.errors import SelfaugError

ALL_VARS = {"prompt": "What is 2+3?", "gold": "2+3=5\n#### 5", "topic": "tea", "answer": "5", "turn": 0, "history": []}


@pytest.mark.parametrize("name", ["self_dialogue.j2", "self_answer.j2", "paraphrase.j2", "rewrite.j2", "judge.j2"])
def test_builtin_templates_render_and_document_their_variables(name):
    path = builtin_templates_dir() / "prompts" / name
    text = path.read_text()
    assert text.startswith("{#") and "Variables" in text
    out = render(f"prompts/{name}", **ALL_VARS)
    assert out and "{{" not in out and "{#" not in out


def test_self_dialogue_template_uses_history_after_first_turn():
    first = render("prompts/self_dialogue.j2", **ALL_VARS)
    later = render("prompts/self_dialogue.j2", **{**ALL_VARS, "turn": 1, "history": [
        {"role": "user", "content": "How do I brew green tea?"}, {"role": "assistant", "content": "Use 80C water."}]})
    assert "tea" in first and "How do I brew green tea?" in later and "Use 80C water." in later


def test_rewrite_template_carries_the_sdft_instruction():
    assert "Using the reference answer as a guide, write your own response" in render("prompts/rewrite.j2", **ALL_VARS)


def test_recipe_folder_wins_and_hash_is_sha256_of_text(tmp_path):
    (tmp_path / "prompts").mkdir()
    own = tmp_path / "prompts" / "judge.j2"
    own.write_text("Judge {{ answer }} vs {{ gold }}")
    assert find_template("prompts/judge.j2", tmp_path) == own
    assert render("prompts/judge.j2", recipe_dir=tmp_path, answer="a", gold="b") == "Judge a vs b"
    assert template_hash("prompts/judge.j2", tmp_path) == hashlib.sha256(own.read_bytes()).hexdigest()
    assert template_hash("prompts/judge.j2") != template_hash("prompts/judge.j2", tmp_path)


def test_missing_variable_and_missing_template_are_user_errors(tmp_path):
    (tmp_path / "t.j2").write_text("{{ nope }}")
    with pytest.raises(SelfaugError, match="nope"):
        render("t.j2", recipe_dir=tmp_path, prompt="x")
    with pytest.raises(SelfaugError, match="not found"):
        render("prompts/absent.j2", recipe_dir=tmp_path)


def test_sandbox_blocks_attribute_escapes(tmp_path):
    (tmp_path / "evil.j2").write_text("{{ prompt.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SelfaugError):
        render("evil.j2", recipe_dir=tmp_path, prompt="x")


def test_every_documented_variable_has_a_default(tmp_path):
    (tmp_path / "all.j2").write_text("{{ prompt }}|{{ gold }}|{{ response }}|{{ answer }}|{{ topic }}|{{ turn }}|"
                                     "{{ history | length }}|{{ turns }}|{{ system_prompt }}|{{ row | length }}")
    assert render("all.j2", recipe_dir=tmp_path, gold="G") == "|G|G|||0|0|1||0"

"""Recipe loading: extends, --set, precedence, locations."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.recipe.loader import load_recipe

BASE = """\
name: base
task:
  name: gsm8k
  source: {kind: packaged, name: gsm8k}
  split: {train: 40, heldout: 10}
augment:
  method: sa_sft
  ratio: 0.25
train:
  lr: 3.0e-5
  lora: {r: 4}
model: {ref: "packaged:smollm2-135m-instruct"}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_precedence_defaults_extends_file_set(tmp_path: Path) -> None:
    write(tmp_path, "bases/base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "extends: bases/base.yaml\nname: child\ntrain:\n  epochs: 3\n")
    loaded = load_recipe(child, ["train.epochs=5", "train.lora.alpha=64"])
    r = loaded.recipe
    assert r.name == "child"  # file over base
    assert r.train.lr == 3e-5  # from base, deep-merged with the child's train
    assert r.train.epochs == 5  # --set over file
    assert r.train.lora.r == 4 and r.train.lora.alpha == 64  # base + --set merge inside lora
    assert r.train.warmup_ratio == 0.03  # schema default
    assert r.augment.method == "sa_sft" and r.augment.ratio == 0.25
    assert [p.name for p in loaded.files] == ["child.yaml", "base.yaml"]


def test_extends_chain_applies_base_first(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", "extends: a.yaml\nname: b\ntrain: {lr: 1.0e-3, epochs: 4}\n")
    c = write(tmp_path, "c.yaml", "extends: b.yaml\nname: c\ntrain: {lr: 2.0e-3}\n")
    r = load_recipe(c).recipe
    assert (r.train.lr, r.train.epochs, r.train.lora.r) == (2e-3, 4, 4)


def test_switching_method_replaces_base_variant(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "c.yaml", "extends: base.yaml\nname: c\naugment: {method: s3ft}\n")
    r = load_recipe(child).recipe
    assert r.augment.method == "s3ft"  # sa_sft's `ratio` did not leak into s3ft


def test_locations_point_into_the_file_that_wrote_the_value(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "c.yaml", "extends: base.yaml\nname: c\n")
    loaded = load_recipe(child)
    loc = loaded.where("train", "lr")
    assert loc.file.endswith("base.yaml") and loc.line == 10
    assert loaded.where("name").file.endswith("c.yaml")


def test_set_error_names_the_argument(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE)
    with pytest.raises(SelfaugError) as info:
        load_recipe(path, ["train.lr=-1"])
    problem = info.value.problems[0]
    assert problem.location.file == "--set train.lr=-1" and problem.field == "train.lr"
    assert "> 0" in problem.expected


def test_set_unknown_key_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE)
    with pytest.raises(SelfaugError) as info:
        load_recipe(path, ["train.epoch=3"])
    assert info.value.problems[0].hint == "did you mean `epochs`?"


def test_set_into_list_item(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE + "eval: {retention: [piqa, sciq]}\n")
    assert load_recipe(path, ["eval.retention.1=arc_easy"]).recipe.eval.retention == ["piqa", "arc_easy"]
    with pytest.raises(SelfaugError, match="no item 5"):
        load_recipe(path, ["eval.retention.5=x"])


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", BASE + "name: again\n")
    with pytest.raises(SelfaugError, match="appears twice") as info:
        load_recipe(path)
    assert info.value.problems[0].location.line == 13


def test_task_and_stages_are_exclusive(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "name: x\n")
    with pytest.raises(SelfaugError, match="exactly one of `task`") as info:
        load_recipe(path)
    assert info.value.problems[0].location.line == 1


def test_extends_list_and_bad_extends_value(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", "train: {epochs: 7}\n")
    ok = write(tmp_path, "ok.yaml", "extends: [a.yaml, b.yaml]\nname: ok\n")
    assert load_recipe(ok).recipe.train.epochs == 7
    bad = write(tmp_path, "bad.yaml", "extends: 3\nname: bad\n")
    with pytest.raises(SelfaugError, match="must name a recipe file"):
        load_recipe(bad)

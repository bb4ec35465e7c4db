"""Hostile recipe files (issue 10, classes 1-3): nesting, alias bombs, extends graphs, absurd numbers.

Each case runs the real CLI in a subprocess and must be refused cleanly (``recipe_cli.assert_refused``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.recipe_cli import BASE, assert_refused, project, selfaug, write


def _nested(depth: int, shape: str) -> str:
    if shape == "flow_list":
        return "deep: " + "[" * depth + "]" * depth
    if shape == "flow_map":
        return "deep: " + "{a: " * depth + "1" + "}" * depth
    if shape == "block_map":
        return "deep:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(depth)) + "  " * (depth + 1) + "v: 1"
    if shape == "in_task":  # deep inside a real section, past the schema's own nesting
        return "train:\n  lora:\n    target_modules: " + "[" * depth + "q" + "]" * depth
    raise ValueError(shape)


# ----------------------------------------------------------------------------- class 1: nesting
@pytest.mark.parametrize("depth,shape", [
    (65, "flow_list"), (300, "flow_list"), (500, "flow_map"), (1_000, "flow_list"), (5_000, "flow_map"),
    (100_000, "flow_list"), (300, "block_map"), (400, "in_task"),
])
def test_deep_yaml_is_refused_with_one_message(tmp_path: Path, depth: int, shape: str) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE + _nested(depth, shape) + "\n")
    result = selfaug("validate", "r.yaml", cwd=proj)
    assert_refused(result, "nested more than 64 levels deep", "r.yaml:")


def test_nesting_at_the_limit_is_an_ordinary_error(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE + _nested(60, "flow_list") + "\n")  # 61 levels with the top mapping
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "unknown key `deep`")


def test_depth_through_an_alias_is_counted(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE + "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 40 + "*a" + "]" * 40 + "\n")
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "nested more than 64 levels deep")


@pytest.mark.parametrize("arg", ["train." + ".".join(["x"] * 2_000) + "=1", "train.lr=" + "[" * 3_000 + "]" * 3_000])
def test_deep_set_argument_is_refused(tmp_path: Path, arg: str) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE)
    assert_refused(selfaug("validate", "r.yaml", "--set", arg, cwd=proj), "--set", "64")


def test_integer_too_long_to_read(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE + "seed: " + "9" * 50_000 + "\n")
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "cannot be read", "digits")


# ----------------------------------------------------------------------------- class 2: alias bombs
def _laughs(levels: int, width: int, mapping: bool) -> str:
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        refs = [f"*l{i - 1}"] * width
        body = "{" + ", ".join(f"k{j}: {r}" for j, r in enumerate(refs)) + "}" if mapping else "[" + ", ".join(refs) + "]"
        lines.append(f"l{i}: &l{i} {body}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels,width,mapping", [(10, 9, False), (30, 2, True), (6, 30, False), (4, 400, True)])
def test_billion_laughs_is_refused(tmp_path: Path, levels: int, width: int, mapping: bool) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE + _laughs(levels, width, mapping))
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "expands to more than 100,000 values")


def test_billion_laughs_in_an_extends_base(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "bases/bomb.yaml", _laughs(10, 9, False))
    write(proj, "r.yaml", "extends: bases/bomb.yaml\n" + BASE)
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "bomb.yaml", "expands to more than 100,000 values")


def test_bombs_split_over_bases_share_one_budget(tmp_path: Path) -> None:
    proj = project(tmp_path)
    for i in range(4):  # 4 x 40,000 values: each file alone is under the limit
        write(proj, f"b{i}.yaml", _laughs(2, 200, False))
    write(proj, "r.yaml", "extends: [b0.yaml, b1.yaml, b2.yaml, b3.yaml]\n" + BASE)
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "expands to more than")


def test_billion_laughs_through_set(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE)
    bomb = "{" + ", ".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else "x"] * 9) + "]" for i in range(10)) + "}"
    assert_refused(selfaug("validate", "r.yaml", "--set", f"train.lora={bomb}", cwd=proj), "expands to more than")


@pytest.mark.parametrize("text", ["a: &a [1, *a]\n", "a: &a {x: *a}\n", "a: &a {<<: *a}\n"])
def test_recursive_alias_is_refused(tmp_path: Path, text: str) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE + text)
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "refers to a collection that contains it")


# ----------------------------------------------------------------------------- class 2: extends graphs
def test_repeated_diamonds_of_extends(tmp_path: Path) -> None:
    proj = project(tmp_path)
    for i in range(6):  # 2**6 = 64 loads from 7 small files
        write(proj, f"d{i}.yaml", f"extends: [d{i + 1}.yaml, d{i + 1}.yaml]\n")
    write(proj, "d6.yaml", "seed: 1\n")
    write(proj, "r.yaml", "extends: d0.yaml\n" + BASE)
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "`extends` reads more than 32 files")


def test_wide_extends(tmp_path: Path) -> None:
    proj = project(tmp_path)
    for i in range(40):
        write(proj, f"w{i}.yaml", f"seed: {i}\n")
    write(proj, "r.yaml", "extends: [" + ", ".join(f"w{i}.yaml" for i in range(40)) + "]\n" + BASE)
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "`extends` reads more than 32 files")


def test_long_extends_chain(tmp_path: Path) -> None:
    proj = project(tmp_path)
    for i in range(20):
        write(proj, f"c{i}.yaml", f"extends: c{i + 1}.yaml\n")
    write(proj, "c20.yaml", "seed: 1\n")
    write(proj, "r.yaml", "extends: c0.yaml\n" + BASE)
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "`extends` chain is more than 8 files deep")


def test_extends_within_the_limits_still_works(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "a.yaml", "seed: 7\n")
    write(proj, "b.yaml", "extends: a.yaml\ntrain: {epochs: 1}\n")
    write(proj, "r.yaml", "extends: [b.yaml, a.yaml]\n" + BASE)
    result = selfaug("validate", "r.yaml", cwd=proj)
    assert result.code == 0, result.output


def test_oversized_recipe_file(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE + "# " + "x" * (2 << 20) + "\n")
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "the limit is 1,048,576")


# ----------------------------------------------------------------------------- class 3: absurd numbers
@pytest.mark.parametrize("arg,words", [
    ("train.epochs=1e23", ("train.epochs", "<= 1000")),
    ("train.epochs=.inf", ("train.epochs", "finite")),
    ("train.lr=.nan", ("train.lr", "finite")),
    ("train.batch_size=1000000000000", ("train.batch_size", ">= 1 and <= 65536")),
    ("train.max_length=99999999", ("train.max_length", "<= 131072")),
    ("train.lora.r=1000000", ("train.lora.r", "<= 4096")),
    ("augment={method: sa_sft, n_dialogues: 100000000000}", ("augment.n_dialogues", "<= 10000000")),
    ("augment={method: sa_sft, sampling: {max_new_tokens: 10000000}}", ("max_new_tokens", "<= 32768")),
    ("eval.limit=10000000000", ("eval.limit", "<= 10000000")),
    ("task.split.train=10000000000", ("task.split.train", "<= 10000000")),
    ("seed=1099511627776", ("seed", "<= 4294967295")),
    ("seed=-3", ("seed", ">= 0")),
    ("execution.num_processes=100000", ("execution.num_processes", "<= 1024")),
    ("execution.generate_batch_size=99999999", ("generate_batch_size", "<= 65536")),
    ("execution.slurm.gpus_per_node=1000", ("gpus_per_node", "<= 64")),
    ("augment={method: s3ft, judge: {kind: numeric, timeout_s: 1e9}}", ("timeout_s", "<= 600")),
    ("train.freeze.layers=0-99999999999", ("train.freeze.layers", "0 to 10,000")),
    ("train.freeze.layers=[0, 123456789]", ("train.freeze.layers", "0 to 10,000")),
])
def test_absurd_numbers_are_bounded(tmp_path: Path, arg: str, words: tuple[str, ...]) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE)
    assert_refused(selfaug("validate", "r.yaml", "--set", arg, cwd=proj), *words)


def test_absurd_number_in_the_file_names_its_line(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE + "train:\n  epochs: 1.0e+23\n")
    assert_refused(selfaug("validate", "r.yaml", cwd=proj), "r.yaml:10:", "train.epochs", "a value > 0.0 and <= 1000")


def test_run_and_compile_refuse_the_same(tmp_path: Path) -> None:
    proj = project(tmp_path)
    write(proj, "r.yaml", BASE + _laughs(10, 9, False))
    assert_refused(selfaug("compile", "r.yaml", "-o", "out", cwd=proj), "expands to more than")
    assert_refused(selfaug("run", "r.yaml", "--dry-run", cwd=proj), "expands to more than")
    assert not (proj / "out").exists()


@pytest.mark.parametrize("text", [_laughs(10, 9, False), "name: s\narms: " + "[" * 5_000 + "]" * 5_000 + "\n"])
def test_study_files_have_the_same_limits(tmp_path: Path, text: str) -> None:
    proj = project(tmp_path)
    write(proj, "study.yaml", text)
    assert_refused(selfaug("study", "run", "study.yaml", cwd=proj), "study.yaml")

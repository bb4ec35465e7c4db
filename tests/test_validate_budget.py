"""`validate`'s budget: real row counts for every task source, and the dtype and memory the run uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfaug_compiler import precision
from selfaug_compiler.compile.budget import TEMPLATE_TOKENS, estimate_tokens, train_memory
from selfaug_compiler.compile.checks import check_recipe
from selfaug_compiler.compile.model_info import read_model_info
from selfaug_compiler.recipe.loader import load_recipe
from selfaug_compiler.recipe.schema import TrainSpec

ROOT = Path(__file__).parents[1]
LAB = sorted((ROOT / "recipes" / "lab").glob("*.yaml"))


def _train_split(name: str, train: int | None, heldout: int, seed: int) -> list[dict]:
    """The training rows the ingest step takes from a packaged source (its own code, not validate's)."""
    from selfaug_compiler.data.ingest import _fill_keys, split_rows
    from selfaug_compiler.data.sources import load_rows

    rows = _fill_keys(load_rows(f"packaged:{name}", {"prompt": "question", "response": "answer"}))
    return split_rows(rows, train=train, heldout=heldout, seed=seed)[0].to_pylist()


@pytest.mark.parametrize("path", LAB, ids=[p.stem for p in LAB])
def test_lab_recipe_budget_counts_the_rows_the_run_trains_on(path: Path) -> None:
    loaded = load_recipe(path)
    report = check_recipe(loaded)
    assert report.ok, [p.render() for p in report.errors]
    budget = report.budget
    assert budget["tokens_to_train"] > 0
    total = 0
    for stage, spec in zip(budget["stages"], loaded.recipe.stage_list()):
        task, train = spec.task, spec.train
        rows = _train_split(task.source.name, task.split.train, task.split.heldout, task.split.seed)
        assert stage["task_rows"] == len(rows) > 0
        aug = spec.augment
        generated = {"s3ft": lambda: aug.answer.max_new_tokens // 2,  # trains on its own replies, not gold
                     "sdft": lambda: aug.sampling.max_new_tokens // 2}.get(aug.method)
        chars = sum(estimate_tokens(r["prompt"]) + (generated() if generated else estimate_tokens(r["response"]))
                    for r in rows) / len(rows)
        # plausible: the text's own tokens plus a chat template's, never more than max_length
        assert chars < stage["mean_example_tokens"] <= min(chars + 2 * TEMPLATE_TOKENS, train.max_length)
        assert stage["tokens_to_train"] >= len(rows) * stage["mean_example_tokens"] * train.epochs
        total += stage["tokens_to_train"]
    assert budget["tokens_to_train"] == total


def test_lab_sft_budget_matches_the_tokenizer_within_a_fifth() -> None:
    """Calibration: SmolLM2's chat-formatted SST-2 training rows, counted once with the real
    tokenizer and ``train.formatting`` (400 rows of recipes/lab/sft.yaml: 28,104 tokens)."""
    budget = check_recipe(load_recipe(ROOT / "recipes" / "lab" / "sft.yaml")).budget
    assert abs(budget["tokens_to_train"] - 28_104) / 28_104 < 0.2


def _recipe(tmp_path: Path, source: str, split: str = "{heldout: 2}", extra: str = "") -> Path:
    (tmp_path / "r.yaml").write_text(f"""\
name: t
task:
  name: adds
  source: {source}
  fields: {{prompt: q, response: a}}
  split: {split}
train: {{max_length: 128}}
eval: {{retention: [arc_easy]}}
model: {{ref: "packaged:smollm2-135m-instruct"}}
{extra}""")
    return tmp_path / "r.yaml"


ROWS = [{"q": f"What is {i} + {i}?", "a": f"It is {2 * i}."} for i in range(30)]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_local_file_rows_are_counted(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    elif fmt == "json":
        path.write_text(json.dumps({"data": ROWS}))
    elif fmt == "csv":
        path.write_text("q,a\n" + "".join(f'"{r["q"]}","{r["a"]}"\n' for r in ROWS))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), path, row_group_size=7)
    loaded = load_recipe(_recipe(tmp_path, f"{{kind: file, path: data.{fmt}}}"))
    report = check_recipe(loaded)
    (stage,) = report.budget["stages"]
    assert report.ok and (stage["source_rows"], stage["task_rows"]) == (30, 28)
    assert stage["tokens_to_train"] == 28 * stage["mean_example_tokens"] * loaded.recipe.train.epochs > 0


def test_saved_hf_folder_rows_are_counted_as_the_ingest_reads_them(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from selfaug_compiler.data.sources import SourceSpec, load_rows

    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:20]),
                          "test": datasets.Dataset.from_list(ROWS[20:])}).save_to_disk(str(tmp_path / "ds"))
    for split, n in (("train", 20), ("test", 10)):
        report = check_recipe(load_recipe(_recipe(tmp_path, f"{{kind: hf, path: ds, split: {split}}}")))
        (stage,) = report.budget["stages"]
        assert report.ok and stage["source_rows"] == n and stage["task_rows"] == n - 2
        assert load_rows(SourceSpec(str(tmp_path / "ds"), split=split), {"prompt": "q", "response": "a"}).num_rows == n
    bad = check_recipe(load_recipe(_recipe(tmp_path, "{kind: hf, path: ds, split: validation}")))
    assert [p.field for p in bad.errors] == ["task.source.path"] and "split `validation`" in bad.errors[0].message


def test_split_larger_than_the_source_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    report = check_recipe(load_recipe(_recipe(tmp_path, "{kind: file, path: data.jsonl}", "{train: 25, heldout: 10}")))
    (problem,) = report.errors
    assert problem.field == "task.split" and "the source has 30" in problem.message


def test_replay_rows_are_capped_by_the_replay_source(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    (tmp_path / "extra.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS[:5]))
    extra = "augment: {method: replay, source: {kind: file, path: extra.jsonl}, fields: {prompt: q, response: a}, ratio: 1.0}\n"
    report = check_recipe(load_recipe(_recipe(tmp_path, "{kind: file, path: data.jsonl}", extra=extra)))
    (stage,) = report.budget["stages"]
    assert report.ok and stage["train_rows"] == 28 + 5


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch):
    """No GPU visible and no forced bf16: the dtype follows the (faked) CPU flags."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("SELFAUG_CPU_BF16", raising=False)
    precision.cpu_has_fast_bf16.cache_clear()
    yield monkeypatch
    precision.cpu_has_fast_bf16.cache_clear()


@pytest.mark.parametrize("flags,expected", [({"avx2", "avx512f", "avx512_bf16"}, "bfloat16"),
                                            ({"avx2", "amx_bf16", "amx_tile"}, "bfloat16"),
                                            ({"avx2", "avx512f", "fma"}, "float32")])
def test_validate_shows_the_dtype_the_run_picks(cpu_only: pytest.MonkeyPatch, flags: set[str], expected: str) -> None:
    torch = pytest.importorskip("torch")
    from selfaug_compiler.models.loading import resolve_dtype

    cpu_only.setattr(precision, "cpu_flags", lambda: set(flags))
    memory = check_recipe(load_recipe(ROOT / "recipes" / "lab" / "sft.yaml")).budget["memory"]
    assert (memory["device"], memory["dtype"]) == ("cpu", expected)
    assert resolve_dtype("auto", "cpu") == getattr(torch, expected)  # the run's decision
    assert ("no avx512_bf16" in memory["why"]) == (expected == "float32")


def test_memory_follows_dtype_and_method(cpu_only: pytest.MonkeyPatch) -> None:
    info = read_model_info("packaged:smollm2-135m-instruct")
    full, lora = TrainSpec(method="full", max_length=256), TrainSpec(method="lora", max_length=256)
    lower = TrainSpec(method="freeze", max_length=256, freeze={"layers": "0-14"})
    fp32 = train_memory(info, full, "float32", "cpu", 8, 256)
    bf16 = train_memory(info, full, "bfloat16", "cpu", 8, 256)
    params = info.approx_params()
    assert fp32["weights"] == bf16["weights"] == params * 4  # weight_dtype fp32: master weights fp32 either way
    assert fp32["gradients"] + fp32["optimizer"] == params * 12
    assert bf16["activations"] == fp32["activations"] / 2
    small = train_memory(info, lora, "float32", "cpu", 8, 256)
    assert small["gradients"] + small["optimizer"] < (fp32["gradients"] + fp32["optimizer"]) / 100
    assert small["activations"] == fp32["activations"]  # LoRA still back-propagates through every layer
    frozen = train_memory(info, lower, "float32", "cpu", 8, 256)
    assert frozen["activations"] == fp32["activations"] * 15 / 30  # nothing below layer 15 needs its activations
    # the lab's full fine-tuning on this kind of CPU: measured 5.0 GiB peak after one AdamW step
    # (before the moments exist), ~6 GiB from the second step on; the estimate is near that
    assert 5.0 < sum(fp32.values()) / 2**30 < 8.0


def test_completion_style_examples_count_no_chat_template(tmp_path: Path) -> None:
    """A completion-style model (model.prompt_format: completion) trains on prompt + "\\n" + reply +
    EOS: the budget counts 2 template tokens an example there, not the chat template's."""
    from selfaug_compiler.compile.budget import COMPLETION_TOKENS

    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    chat = _recipe(tmp_path, "{kind: file, path: data.jsonl}")
    raw = tmp_path / "raw.yaml"
    raw.write_text(chat.read_text().replace('model: {ref: "packaged:smollm2-135m-instruct"}',
                                            'model: {ref: "packaged:smollm2-135m-instruct", prompt_format: completion}'))
    budgets = []
    for path in (chat, raw):
        report = check_recipe(load_recipe(path))
        assert report.ok, [p.render() for p in report.errors]
        budgets.append(report.budget["stages"][0]["mean_example_tokens"])
    assert budgets[0] - budgets[1] == TEMPLATE_TOKENS - COMPLETION_TOKENS

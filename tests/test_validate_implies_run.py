"""Issue 11.5's table, validate ⇒ run (input kinds x sources), one test id per case: each file
format (jsonl, json, csv, parquet) with prompt/response, each shape (prompt/response,
prompt/completion, Alpaca, messages, ShareGPT) in jsonl, detected (task.format: auto), and a model
without a chat template with and without one named, a GGUF file with and without a chat template,
each installed packaged benchmark name and an unknown one. Accepted cases exit 0; refused ones exit
2 (naming the fix where checked). Every accepted input case (not the benchmark names) then runs whole
on a tiny model (ingest, SA-SFT self-dialogues, mix, 1 epoch of 4-5 rows, sciq with limit 2,
report); the benchmark names are validate-only, a custom generation benchmark file runs whole (its
generation scorer included), a save_to_disk folder runs whole, an unknown benchmark name is refused
naming the closest. Hub ids cached / not cached offline are in tests/test_data_hub.py (datasets reads
its cache settings at import, so those run in a fresh process). A model without a chat
template declared completion-style (model.prompt_format: completion) runs whole (SDFT: ingest,
rewrite, judge, mix, train, held-out and sciq evaluations); what completion style cannot do is
refused naming the fix (SA-SFT, multi-turn rows, a chat template beside it, a benchmark's
chat_template). A code-scored benchmark (humaneval, tests run in the sandbox) runs one evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfaug_compiler.cli import main
from tests.tiny_models import build_tiny_model

ROWS = {
    "prompt_response": [{"prompt": f"{i}+{i}?", "response": str(2 * i)} for i in range(6)],
    "prompt_completion": [{"prompt": f"{i}+{i}?", "completion": str(2 * i)} for i in range(6)],
    "alpaca": [{"instruction": "Add.", "input": f"{i}+{i}", "output": str(2 * i)} for i in range(6)],
    "messages": [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{i}+{i}?"},
                               {"role": "assistant", "content": str(2 * i)}]} for i in range(6)],
    "sharegpt": [{"conversations": [{"from": "human", "value": f"{i}+{i}?"}, {"from": "gpt", "value": str(2 * i)}]}
                 for i in range(6)],
}


def write_data(folder: Path, shape: str, fmt: str) -> str:
    rows = ROWS[shape]
    path = folder / f"t.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    else:
        import pandas as pd

        frame = pd.DataFrame(rows)
        frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    return path.name


def write_recipe(folder: Path, data: str, model_extra: str = "", shape: str = "", eval_: str = "retention: []",
                 augment: str = "{method: sa_sft}") -> Path:
    fields = ", fields: {prompt: prompt, response: response}" if shape == "prompt_response" else ""
    (folder / "r.yaml").write_text(
        f"name: m\nmodel: {{ref: ./tiny, dtype: float32{model_extra}}}\n"
        f"task: {{name: t, source: {{kind: file, path: {data}}}, format: auto{fields}, split: {{heldout: 2}}}}\n"
        f"train: {{max_length: 64, epochs: 1, batch_size: 2}}\naugment: {augment}\n"
        f"eval: {{{eval_}, in_domain: [], limit: 2}}\n")
    return folder / "r.yaml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("m") / "tiny"
    build_tiny_model(folder)
    return folder


def validated_then_run(recipe: Path, capsys) -> None:
    """validate accepts it, then the whole run (ingest, SA-SFT self-dialogues, mix, train, evals, report) succeeds."""
    assert main(["validate", str(recipe)]) == 0, capsys.readouterr()
    recipe.write_text(recipe.read_text().replace("retention: []", "retention: [sciq]"))
    assert main(["run", str(recipe), "--store", str(recipe.parent / "s.duckdb")]) == 0, capsys.readouterr()
    assert list(recipe.parent.glob("artifacts/report-*/report.json"))


def place(tmp_path: Path, tiny: Path, bare: bool = False) -> None:
    import shutil

    shutil.copytree(tiny, tmp_path / "tiny")
    if bare:
        config = json.loads((tmp_path / "tiny" / "tokenizer_config.json").read_text())
        config.pop("chat_template", None)
        (tmp_path / "tiny" / "tokenizer_config.json").write_text(json.dumps(config))
        (tmp_path / "tiny" / "chat_template.jinja").unlink(missing_ok=True)


CASES = [(s, "jsonl") for s in ROWS] + [("prompt_response", f) for f in ("json", "csv", "parquet")]


@pytest.mark.parametrize("shape,fmt", CASES, ids=[f"{s}-{f}" for s, f in CASES])
def test_validate_accepts_each_shape_and_file_format(tmp_path, tiny, capsys, shape, fmt):
    place(tmp_path, tiny)
    validated_then_run(write_recipe(tmp_path, write_data(tmp_path, shape, fmt), shape=shape), capsys)


@pytest.mark.parametrize("template,code", [(None, 2), ("chatml", 0)], ids=["no-template-refused", "chatml-named"])
def test_a_model_without_a_chat_template(tmp_path, tiny, capsys, template, code):
    place(tmp_path, tiny, bare=True)
    extra = f", chat_template: {template}" if template else ""
    recipe = write_recipe(tmp_path, write_data(tmp_path, "messages", "jsonl"), extra)
    if code == 0:
        return validated_then_run(recipe, capsys)
    assert main(["validate", str(recipe)]) == code
    if code == 2:
        err = capsys.readouterr().err
        assert "has no chat template" in err and "model.chat_template" in err and "chatml" in err


@pytest.mark.parametrize("template,code", [(True, 0), (False, 2)], ids=["gguf-with-template", "gguf-without-refused"])
def test_a_gguf_model_file(tmp_path, tiny, capsys, template, code):
    from tests.tiny_gguf import write_tiny_gguf

    write_tiny_gguf(tiny, tmp_path / "m.gguf", chat_template=template)
    recipe = write_recipe(tmp_path, write_data(tmp_path, "messages", "jsonl"))
    recipe.write_text(recipe.read_text().replace("ref: ./tiny", "ref: ./m.gguf"))
    if code == 0:
        return validated_then_run(recipe, capsys)
    assert main(["validate", str(recipe)]) == code, capsys.readouterr()
    assert "model.chat_template" in capsys.readouterr().err


def _benchmarks() -> list[str]:
    from selfaug_compiler.evaluate.catalog import installed_benchmarks

    return sorted(installed_benchmarks())


@pytest.mark.parametrize("name", _benchmarks() + ["no_such_benchmark"])
def test_each_benchmark_name(tmp_path, tiny, capsys, name):
    place(tmp_path, tiny)
    recipe = write_recipe(tmp_path, write_data(tmp_path, "messages", "jsonl"))
    recipe.write_text(recipe.read_text().replace("retention: []", f"retention: [{name}]"))
    code = main(["validate", str(recipe)])
    assert code == (2 if name == "no_such_benchmark" else 0), capsys.readouterr()


def test_a_save_to_disk_folder(tmp_path, tiny, capsys):
    """task.source kind hf naming a folder written by datasets' save_to_disk: validated, then run whole."""
    import datasets

    place(tmp_path, tiny)
    datasets.Dataset.from_list(ROWS["messages"]).save_to_disk(str(tmp_path / "ds"))
    recipe = write_recipe(tmp_path, "t.jsonl")
    recipe.write_text(recipe.read_text().replace("{kind: file, path: t.jsonl}", "{kind: hf, path: ds}"))
    validated_then_run(recipe, capsys)


def test_a_custom_generation_benchmark_file(tmp_path, tiny, capsys):
    """A custom benchmark file (generation, numeric answers) named in the retention suite: validated,
    then run whole, its generation scorer included."""
    place(tmp_path, tiny)
    (tmp_path / "bench.jsonl").write_text("".join(json.dumps({"prompt": f"{i}+1?", "answer": str(i + 1)}) + "\n"
                                                  for i in range(3)))
    recipe = write_recipe(tmp_path, write_data(tmp_path, "messages", "jsonl"),
                          eval_="retention: [mine], custom: [{name: mine, path: bench.jsonl, type: generation, "
                                "answer_type: number}]")
    assert main(["validate", str(recipe)]) == 0, capsys.readouterr()
    assert main(["run", str(recipe), "--store", str(tmp_path / "s.duckdb")]) == 0, capsys.readouterr()
    report = json.loads(next(tmp_path.glob("artifacts/report-*/report.json")).read_text())
    assert "mine" in json.dumps(report["benchmarks"])


def test_an_unknown_benchmark_names_the_closest(tmp_path, tiny, capsys):
    place(tmp_path, tiny)
    recipe = write_recipe(tmp_path, write_data(tmp_path, "messages", "jsonl"), eval_="retention: [arc_easyy]")
    assert main(["validate", str(recipe)]) == 2
    assert "arc_easy" in capsys.readouterr().err


COMPLETION = ", prompt_format: completion"
SDFT = "{method: sdft, sampling: {max_new_tokens: 8}, accept_truncated: true}"


def test_a_completion_style_base_model_runs(tmp_path, tiny, capsys):
    """A model without a chat template, declared completion-style: validated, then run whole
    (ingest, SDFT rewrite + judge, mix, train, held-out generation + gold loss, sciq)."""
    place(tmp_path, tiny, bare=True)
    recipe = write_recipe(tmp_path, write_data(tmp_path, "prompt_response", "jsonl"), COMPLETION,
                          shape="prompt_response", eval_="retention: [], max_new_tokens: 8", augment=SDFT)
    recipe.write_text(recipe.read_text().replace("in_domain: []", "in_domain: [heldout]"))
    assert main(["validate", str(recipe)]) == 0
    assert "; completion-style: raw prompt text, no chat template" in capsys.readouterr().out  # says which
    validated_then_run(recipe, capsys)
    report = json.loads(next(tmp_path.glob("artifacts/report-*/report.json")).read_text())
    assert "heldout" in json.dumps(report["benchmarks"]) and "sciq" in json.dumps(report["benchmarks"])


MULTI_TURN = [{"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"},
                            {"role": "user", "content": "and 2+2?"}, {"role": "assistant", "content": "4"}]}] * 3
REFUSED = {  # case: (data shape, model extra, augment, eval, words the error must name)
    "sa_sft": ("prompt_response", COMPLETION, "{method: sa_sft}", "retention: []",
               ["augment.method", "SA-SFT", "model.prompt_format: chat"]),
    "multi_turn_rows": ("multi_turn", COMPLETION, SDFT, "retention: []",
                        ["t.jsonl: line 1", "single-turn rows", "model.prompt_format: chat"]),
    "with_a_chat_template": ("prompt_response", COMPLETION + ", chat_template: chatml", SDFT, "retention: []",
                             ["model.chat_template", "remove model.chat_template"]),
    "benchmark_chat_template": ("prompt_response", COMPLETION, SDFT,
                                "retention: [gsm8k], packaged: {gsm8k: {chat_template: true}}",
                                ["eval.packaged.gsm8k.chat_template", "remove chat_template"]),
    "served_in_chat_mode": ("prompt_response", COMPLETION + ", backend: {kind: openai, mode: chat, "
                            "base_url: 'http://127.0.0.1:9/v1'}", SDFT, "retention: []",
                            ["model.backend.mode", "set backend.mode: completions"]),
    "chat_model_served_in_completions_mode": ("prompt_response", ", chat_template: chatml, backend: {kind: openai, "
                                              "mode: completions, base_url: 'http://127.0.0.1:9/v1'}", SDFT,
                                              "retention: []", ["model.backend.mode", "set backend.mode: chat"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_a_completion_style_model_cannot_do_is_refused(tmp_path, tiny, capsys, case):
    """Each refused at validate (exit 2) with the field and the fix; the last case is the other
    direction: a chat-style model served through /completions would get raw text."""
    shape, extra, augment, eval_, words = REFUSED[case]
    place(tmp_path, tiny, bare=True)
    if shape == "multi_turn":
        (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MULTI_TURN))
        data = "t.jsonl"
    else:
        data = write_data(tmp_path, shape, "jsonl")
    recipe = write_recipe(tmp_path, data, extra, shape=shape, eval_=eval_, augment=augment)
    assert main(["validate", str(recipe)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    for word in words:
        assert word in err, (word, err)


def test_a_code_scored_benchmark_runs_one_evaluation(tmp_path, tiny, capsys):
    """humaneval (pass@1 by running the reply's code against the tests in the sandbox): accepted,
    then run on the tiny model (no augmentation); each evaluated item's reply was executed and judged."""
    place(tmp_path, tiny)
    recipe = write_recipe(tmp_path, write_data(tmp_path, "prompt_response", "jsonl"), shape="prompt_response",
                          eval_="retention: [humaneval], max_new_tokens: 8", augment="{method: none}")
    assert main(["validate", str(recipe)]) == 0, capsys.readouterr()
    assert main(["run", str(recipe), "--store", str(tmp_path / "s.duckdb")]) == 0, capsys.readouterr()
    report = json.loads(next(tmp_path.glob("artifacts/report-*/report.json")).read_text())
    bench = next(b for b in report["benchmarks"] if b["benchmark"] == "humaneval")
    assert bench["n"] == 2 and bench["before"] in (0.0, 0.5, 1.0)
    from selfaug_compiler.store import open_store

    with open_store(tmp_path / "s.duckdb", read_only=True) as store:
        items = [json.loads(r[0]) for r in store.con.execute(
            "SELECT item_json FROM eval_items JOIN evals USING (model_fp, bench_fp) WHERE benchmark = 'humaneval'"
        ).fetchall()]
    assert len(items) == 4  # 2 items, before and after
    # the sandbox harness ran each reply against the tests: its own verdict, not a crash of the sandbox
    assert all(i["pred"] == "passed" or i["pred"].startswith("error: ") for i in items), [i["pred"] for i in items]

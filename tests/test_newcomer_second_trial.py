"""What a second newcomer trial found (issue 16): targets missing on import, shipped recipes that
warn, S3FT's training budget, answer_type typos, the store named by every data command, the
metadata-drift legend, and a store held by a run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from selfaug_compiler.cli import main

ROOT = Path(__file__).parents[1]


def _task_file(tmp_path: Path) -> Path:
    path = tmp_path / "t.jsonl"
    path.write_text('{"question": "q1", "answer": "a1"}\n{"question": "q2", "answer": "a2"}\n\n'
                    '{"question": "q3"}\n{"question": "q4", "answer": "a4"}\n')
    return path


def test_import_refuses_a_row_without_its_response_and_names_the_line(tmp_path, capsys):
    store = tmp_path / "s.duckdb"
    assert main(["data", "import", str(_task_file(tmp_path)), "--dataset", "t", "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "line 4 has no value in the response column 'answer'" in err and "Traceback" not in err
    assert not store.exists() or "No datasets" in _ls(store, capsys)
    prompts = tmp_path / "p.jsonl"  # a prompt-only file has no target column at all: imported
    prompts.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    assert main(["data", "import", str(prompts), "--dataset", "p", "--store", str(store)]) == 0


def _ls(store: Path, capsys) -> str:
    main(["data", "ls", "--store", str(store)])
    return capsys.readouterr().out


def test_validate_refuses_a_task_file_row_without_a_target(tmp_path, capsys):
    _task_file(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent("""\
        name: t
        model: {ref: packaged:smollm2-135m-instruct}
        task:
          name: t
          source: {kind: file, path: t.jsonl}
          fields: {prompt: question, response: answer}
          split: {train: 2, heldout: 1}
        eval: {retention: [], in_domain: []}
        """))
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "task.fields.response: t.jsonl: line 4 has no value in the response column 'answer'" in err


def test_shipped_recipes_validate_without_warnings_and_a_shared_warning_prints_once(capsys):
    from selfaug_compiler.cli.recipe_cmds import _print_text
    from selfaug_compiler.errors import Problem

    assert main(["validate", str(ROOT / "recipes" / "default.yaml"), str(ROOT / "recipes" / "continual.yaml")]) == 0
    assert "warning" not in capsys.readouterr().err
    warn = Problem("limit small", field="augment.sampling.max_new_tokens", severity="warning")
    _print_text([{"file": f, "problems": [warn], "model": None, "budget": None} for f in ("a.yaml", "b.yaml")])
    assert capsys.readouterr().err.count("limit small") == 1


def test_s3ft_budget_trains_on_its_own_replies_not_the_gold_words():
    from selfaug_compiler.compile.checks import check_recipe
    from selfaug_compiler.recipe.loader import load_recipe

    sft = check_recipe(load_recipe(ROOT / "recipes" / "demo" / "sft.yaml")).budget["stages"][0]
    s3ft = check_recipe(load_recipe(ROOT / "recipes" / "demo" / "s3ft.yaml")).budget["stages"][0]
    # SST-2's gold reply is one word; S3FT's targets are the model's replies (up to 256 tokens)
    assert s3ft["mean_example_tokens"] >= sft["mean_example_tokens"] + 100
    assert s3ft["tokens_to_train"] > 2 * sft["tokens_to_train"]


def test_an_answer_type_typo_is_reported_alone(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent("""\
        name: t
        model: {ref: packaged:smollm2-135m-instruct}
        task:
          name: sst2
          source: {kind: packaged, name: sst2}
          fields: {prompt: question, response: answer}
          answer_type: choise
          split: {train: 20, heldout: 10}
        augment: {method: s3ft, judge: {kind: choice}}
        eval: {retention: [], in_domain: []}
        """))
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "did you mean `choice`?" in err and "(1 error)" in err and "judge" not in err


def test_run_help_states_the_store_precedence(capsys):
    import inspect

    from selfaug_compiler.cli.run_cmds import run_command

    help_text = inspect.signature(run_command).parameters["store"].default.help
    assert help_text == "store file (wins over $SELFAUG_STORE, then the recipe's store.path, then .selfaug/store.duckdb)"
    main(["run", "--help"])
    assert "wins over" in capsys.readouterr().out


def test_every_data_command_names_its_store_on_stderr_only(tmp_path, capsys):
    store = tmp_path / "s.duckdb"
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "a", "response": "x"}\n{"prompt": "b", "response": "y"}\n')
    assert main(["data", "import", str(rows), "--dataset", "d", "--store", str(store)]) == 0
    rows.write_text('{"prompt": "a", "response": "x"}\n{"prompt": "b", "response": "z"}\n')
    assert main(["data", "import", str(rows), "--dataset", "d", "--store", str(store)]) == 0
    capsys.readouterr()
    line = f"store: {store.resolve()} (from --store)"
    for args in (["ls"], ["show", "d"], ["log", "d"], ["verify"], ["diff", "d@1", "d@2"]):
        main(["data", *args, "--store", str(store), "--format", "json"])
        out, err = capsys.readouterr()
        assert err.count(line) == 1, (args, err)
        json.loads(out)  # piped output stays clean
    main(["data", "diff", "d@1", "d@2", "--store", str(store)])
    assert "metadata drift: rows with the same prompt and response" in capsys.readouterr().out


def test_a_store_held_by_a_run_names_the_holder_and_the_wait_in_seconds(tmp_path):
    from selfaug_compiler.errors import SelfaugError
    from selfaug_compiler.store import open_store

    path = tmp_path / "s.duckdb"
    with open_store(path):
        pass
    script = tmp_path / "hold_store.py"
    script.write_text("import duckdb, sys, time\nc = duckdb.connect(sys.argv[1])\nprint('held', flush=True)\n"
                      "time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SelfaugError) as caught:
            open_store(path, read_only=True, wait_s=0.2)
        text = caught.value.render()
        assert f"(pid {holder.pid}: hold_store.py {path})" in text  # the holder's command line
        assert "SELFAUG_STORE_WAIT to the seconds to wait (waited 0.2 s)" in text
    finally:
        holder.kill()
        holder.wait()


def test_training_reports_micro_batches_within_an_optimizer_step(tmp_path):
    pytest.importorskip("torch")
    from selfaug_compiler.recipe.schema import TrainSpec
    from selfaug_compiler.train.launch import train_model
    from selfaug_compiler.train.tiny import build_tiny_model

    calls: list[tuple[int, str]] = []

    def progress(done, total, phase="", *, unit="items", note=""):
        calls.append((done, note))

    rows = [{"prompt": f"What is {i} plus {i + 1}?", "response": f"The answer is {2 * i + 1}."} for i in range(16)]
    spec = TrainSpec(lr=5e-3, epochs=1, batch_size=8, max_length=64, packing=False)
    train_model(str(build_tiny_model(tmp_path / "base")), rows, spec, tmp_path / "out", dtype="float32",
                micro_batch_size=4, seed=7, progress=progress)
    notes = [n for d, n in calls if "micro-batch" in n]
    # 2 optimizer steps of 2 micro-batches: forward and backward of each, reported at the step's count
    assert notes == [f"step {s}: micro-batch {m}/2 {p}" for s in (1, 2) for m in (1, 2) for p in ("forward", "backward")]
    assert [d for d, n in calls if n.startswith("step 2:")] == [1, 1, 1, 1]


def test_data_ls_on_a_missing_store_says_so_once(tmp_path, capsys):
    missing = tmp_path / "none.duckdb"
    assert main(["data", "ls", "--store", str(missing)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"No store at {missing.resolve()} (from --store), so no datasets; `selfaug data "
                                "import FILE --dataset NAME` or `selfaug run RECIPE` creates it"]
    assert err == "" and not missing.exists()


def test_study_dry_run_counts_a_step_shared_by_arms_once(tmp_path, capsys):
    from selfaug_compiler.store import open_store
    from selfaug_compiler.study.run import plan_run
    from selfaug_compiler.study.spec import load_study

    study = load_study(ROOT / "studies" / "demo.yaml")
    plans = {key.label: plan_run(study, key)[0] for key in study.runs()}
    ids = {label: {s.id: s.name for s in plan.steps} for label, plan in plans.items()}
    shared = sorted(ids["sft"].keys() & ids["s3ft"].keys(), key=lambda i: ids["sft"][i])
    assert len(shared) >= 2  # the ingest and the base model's evaluations
    ingest = plans["sft"].step("ingest.sst2")
    store = tmp_path / "lab.duckdb"
    with open_store(store) as s:  # the shared ingest step has already run
        s.start_run("r0", "h", "{}")
        s.record_step("r0", ingest.name, ingest.id, "done", None, None, json.dumps({"datasets": {}}))
    assert main(["study", "run", str(ROOT / "studies" / "demo.yaml"), "--dry-run", "--store", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    n_sft, n_s3ft = len(ids["sft"]), len(ids["s3ft"])
    assert lines[1] == f"[1/2] sft/seed0: {n_sft - 1} step(s) to run, 1 cached"
    names = ", ".join(s.name for s in plans["s3ft"].topological() if s.id in ids["sft"])
    assert lines[2] == (f"[2/2] s3ft/seed0: {n_s3ft - len(shared)} step(s) to run; {len(shared)} more shared "
                        f"with sft/seed0, counted there: {names}")
    distinct = len(ids["sft"].keys() | ids["s3ft"].keys())
    assert lines[3] == (f"study: {distinct - 1} step(s) to run, 1 cached ({distinct} distinct steps; "
                        f"{len(shared)} of them shared by several runs, counted once)")


def test_validate_builds_no_arrow_table_so_pandas_is_never_imported():
    """validate took 1.2 s of CPU, half of it pandas, imported by pyarrow when validate built an
    Arrow table of a packaged set only to read its first rows back (issue 16)."""
    program = ("import sys\nfrom selfaug_compiler.cli import main\ncode = main(sys.argv[1:])\n"
               "print('exit', code, sorted(m for m in ('pandas', 'pyarrow', 'torch', 'transformers') if m in sys.modules))")
    for recipe in ("default.yaml", "demo/sft.yaml"):  # gsm8k (json lines), sst2 (Arrow files)
        proc = subprocess.run([sys.executable, "-c", program, "validate", str(ROOT / "recipes" / recipe)],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert "exit 0 " in proc.stdout, proc.stdout + proc.stderr
        imported = proc.stdout.split("exit 0 ")[1]
        assert "pandas" not in imported and "torch" not in imported, imported
        assert recipe != "default.yaml" or "pyarrow" not in imported, imported  # no Arrow file read at all


@pytest.mark.parametrize("name", ["gsm8k", "sciq", "sst2"])
def test_packaged_rows_are_the_rows_of_the_packaged_table(name):
    from selfaug_compiler.data.packaged import load_packaged, packaged_rows

    table = load_packaged(name)
    assert packaged_rows(name) == table.to_pylist() and table.schema.field("id").type == "string"


def test_the_token_estimate_counts_digits_alike_in_ascii_and_other_text():
    from selfaug_compiler.compile.budget import estimate_tokens

    assert estimate_tokens("The answer is 1234.") == 4 + 4  # 15 other characters / 4, rounded up, + 4 digits
    assert estimate_tokens("Die Antwort ist 1234 €.") == 5 + 4  # not ASCII: the per-character count
    assert estimate_tokens("x" * 8 + "٣") == 2 + 1  # an Arabic-Indic digit is a digit too


def test_a_command_finding_no_default_store_names_the_stores_next_to_it(tmp_path, monkeypatch, capsys):
    from selfaug_compiler.store import open_store

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SELFAUG_STORE", raising=False)
    with open_store(tmp_path / ".selfaug" / "lab.duckdb"):  # what make demo leaves
        pass
    assert main(["compare", "0123456789ab", "ba9876543210"]) == 2  # run ids are looked up in the store
    err = capsys.readouterr().err
    assert "no store at .selfaug/store.duckdb" in err and "other stores next to it: --store .selfaug/lab.duckdb" in err
    assert main(["data", "show", "x"]) == 2  # a data command: the neighbours named once
    assert capsys.readouterr().err.count("--store .selfaug/lab.duckdb") == 2  # the store: line and the error


@pytest.mark.parametrize("sizes", [[5, 70000, 3, 65530, 0, 200000, 1], [65528], [65520, 4, 1], [0] * 10000, []])
def test_gguf_string_arrays_are_skipped_in_blocks_to_the_byte(sizes):
    import io
    import struct

    from selfaug_compiler.compile.model_info import _skip_strings

    data = b"".join(struct.pack("<Q", n) + b"x" * n for n in sizes) + b"TAIL"
    f = io.BytesIO(data)
    _skip_strings(f, len(sizes))  # strings longer than a block, a length split across two blocks
    assert f.read() == b"TAIL"

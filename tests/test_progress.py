"""Progress: item counts (not answer choices), the non-terminal throttle, and the lines a real
`selfaug eval` and a real runner step print when output is not a terminal."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from selfaug_compiler.progress import Progress, format_duration, format_rate, in_phase

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(?P<label>[^:]+): (?P<phase>[a-z ]*?)\s?(?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+), "
                  r"(?P<rate>[^,]+), (?P<end>ETA [0-9:?]+|done in [0-9:]+)")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_are_throttled_and_the_last_one_is_printed():
    clock, out = Clock(), io.StringIO()
    progress = Progress("step eval.before.arc_easy", stream=out, interval_s=10, tty=False, clock=clock)
    progress(0, 100)  # the baseline: no line
    for done in range(4, 101, 4):  # 25 updates, one every 2 s
        clock.t += 2
        progress(done, 100)
    lines = out.getvalue().splitlines()
    # 50 s in total: a line at 10, 20, 30, 40 s (every 10 s), then the completed one.
    assert lines[0] == "step eval.before.arc_easy: 20/100 items, 2.0 items/s, ETA 0:40"
    assert len(lines) == 5 and [LINE.match(l)["done"] for l in lines] == ["20", "40", "60", "80", "100"]
    assert lines[-1] == "step eval.before.arc_easy: 100/100 items, 2.0 items/s, done in 0:50"


def test_a_short_phase_stays_quiet_and_phases_count_separately():
    clock, out = Clock(), io.StringIO()
    progress = Progress("step eval.after.style_retention", stream=out, interval_s=10, tty=False, clock=clock)
    progress(0, 10, "answers")
    clock.t += 1
    progress(10, 10, "answers")  # done in 1 s: no line
    assert out.getvalue() == ""
    closeness = in_phase(progress, "closeness")
    closeness(0, 4)
    clock.t += 12
    closeness(2, 4)
    clock.t += 12
    closeness(4, 4)
    lines = out.getvalue().splitlines()
    assert lines == ["step eval.after.style_retention: closeness 2/4 items, 6.0 s/item, ETA 0:12",
                     "step eval.after.style_retention: closeness 4/4 items, 6.0 s/item, done in 0:24"]


def test_units_notes_and_formats():
    clock, out = Clock(), io.StringIO()
    progress = Progress("train", stream=out, interval_s=0, tty=False, clock=clock)
    progress(3, 10, unit="steps")  # resumed at step 3: the rate counts from there
    clock.t += 14
    progress(10, 10, unit="steps", note="loss 0.1234")
    assert out.getvalue() == "train: 10/10 steps, 2.0 s/step, done in 0:14 (loss 0.1234)\n"
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05"
    assert format_rate(None, "items") == "? items/s" and format_rate(12.34, "items") == "12.3 items/s"


def test_mc_progress_counts_items_not_choices():
    from selfaug_compiler.evaluate.loglik import ItemCounter

    seen = []
    owners = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]  # two 4-choice items and a 2-choice item: 10 requests
    counter = ItemCounter(owners, lambda done, total: seen.append((done, total)))
    counter.start()
    counter([0, 1, 4, 8])  # batches follow length order, not item order
    counter([2, 3, 9])
    counter([5, 6, 7])
    assert seen == [(0, 3), (0, 3), (2, 3), (3, 3)]


def test_a_terminal_gets_a_rich_bar():
    out = io.StringIO()
    with Progress("step eval.before.sciq", stream=out, interval_s=0, tty=True) as progress:
        progress(0, 4)
        progress(4, 4)
    text = out.getvalue()
    assert "step eval.before.sciq" in text and "4/4 items" in text


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SELFAUG_PROGRESS_INTERVAL": "0", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("SELFAUG_STORE", None)
    return subprocess.run([sys.executable, "-m", "selfaug_compiler", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.test_evaluate_loglik import build_tiny

    root = tmp_path_factory.mktemp("progress")
    build_tiny(root / "model", add_bos=False)
    rows = [{"query": f"Question {i}: which one?\nAnswer:", "choices": ["red", "green", "blue", "a yellow one"],
             "gold": i % 4} for i in range(10)]
    (root / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_eval_not_on_a_terminal_prints_item_counts_with_an_eta(tiny):
    proc = _run(["eval", str(tiny / "model"), "-b", str(tiny / "mc.jsonl"), "--dtype", "float32",
                 "--device", "cpu", "--batch-size", "4", "--no-cache"], tiny)
    assert proc.returncode == 0, proc.stderr
    lines = [LINE.match(l) for l in proc.stderr.splitlines() if l.startswith("eval mc:")]
    assert lines and all(lines), proc.stderr
    assert {m["total"] for m in lines} == {"10"} and {m["unit"] for m in lines} == {"items"}  # 10 items, not 40 choices
    assert any(m["end"].startswith("ETA") for m in lines) and lines[-1]["done"] == "10"
    assert "result cache: off (--no-cache)" in proc.stdout


def test_runner_steps_report_progress(tiny, capfd, monkeypatch):
    """A real evaluate step through the Runner: its lines are labelled with the step name."""
    from selfaug_compiler.plan import Plan, Step
    from selfaug_compiler.runner import Runner

    monkeypatch.setenv("SELFAUG_PROGRESS_INTERVAL", "0")
    step = Step("eval.before.mine", "evaluate",
                params={"benchmark": "mine", "custom": {"path": "mc.jsonl", "type": "multiple_choice"},
                        "limit": None, "seed": 0, "max_new_tokens": 8,
                        "model": {"ref": str(tiny / "model"), "dtype": "float32"}},
                speed={"eval_batch_size": 3, "device": "cpu"})
    step.id = step.content_id([])
    plan = Plan("p", "hash0", [step])
    Runner(plan, store_path=tiny / "runner.duckdb", recipe_dir=tiny, echo=print).run([step])
    err = capfd.readouterr().err
    lines = [LINE.match(l) for l in err.splitlines() if l.startswith("step eval.before.mine:")]
    assert lines and all(lines) and lines[-1]["done"] == lines[-1]["total"] == "10", err


def test_style_retention_reports_each_phase_in_items(tmp_path):
    """Base answers, the tuned model's answers and the embedding closeness: three counted phases."""
    pytest.importorskip("torch")
    from tests.test_evaluate_style import needs_olmo_eval, task_targets

    if needs_olmo_eval.args[0]:
        pytest.skip(needs_olmo_eval.kwargs["reason"])
    from selfaug_compiler.evaluate.step import execute
    from selfaug_compiler.plan import Plan, Step
    from selfaug_compiler.runtime import StepContext, StepResult
    from selfaug_compiler.store import open_store
    from selfaug_compiler.train.tiny import build_tiny_model

    base, tuned = build_tiny_model(tmp_path / "base", seed=0), build_tiny_model(tmp_path / "tuned", seed=3)
    out = io.StringIO()
    with open_store(tmp_path / "store.duckdb") as store:
        rows = [{"key": f"k{i}", "prompt": f"q{i}", "response": t, "source": "gold"} for i, t in enumerate(task_targets())]
        train = store.commit("task-train", rows, step_id="ingest-id").ref
        inputs = {"ingest.task": StepResult(datasets={"train": train}), "train": StepResult(model=str(tuned))}
        step = Step("eval.after.style_retention", "evaluate", inputs=sorted(inputs),
                    params={"benchmark": "style_retention", "limit": 6, "seed": 0, "max_new_tokens": 8,
                            "model": {"spec": {"ref": str(base), "dtype": "float32"}}},
                    speed={"batch_size": 2, "device": "cpu"})
        step.id = step.content_id(sorted(inputs))
        with Progress(f"step {step.name}", stream=out, interval_s=0, tty=False) as progress:
            execute(StepContext(plan=Plan("p", "h", [step]), step=step, store=store, work_dir=tmp_path,
                                recipe_dir=tmp_path, inputs=inputs, progress=progress))
    lines = [LINE.match(l) for l in out.getvalue().splitlines()]
    assert lines and all(lines), out.getvalue()
    assert {m["label"] for m in lines} == {"step eval.after.style_retention"}
    finals = {m["phase"]: (m["done"], m["total"]) for m in lines if m["end"].startswith("done in")}
    assert finals.get("base answers") == ("6", "6") and finals.get("answers") == ("6", "6"), out.getvalue()
    assert finals.get("closeness") == ("6", "6")  # MiniLM pairs: the two random models answer differently
    assert {m["phase"] for m in lines} <= {"base answers", "answers", "closeness"}

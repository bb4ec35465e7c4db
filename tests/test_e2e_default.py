"""End to end on the real packaged model: `selfaug run` of a shrunk default recipe.

Slow (the packaged SmolLM2 is converted once, ~20 s, then every step runs for real); select
with ``-m slow``. Asserts outcomes: the store holds the datasets with provenance, the model
artifact exists, the report files hold the numbers, and a second run does no model work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from selfaug_compiler.cli import main
from selfaug_compiler.store import open_store

RECIPE = Path(__file__).parent / "e2e" / "tiny_default.yaml"

pytestmark = pytest.mark.slow


def test_tiny_default_runs_end_to_end_and_reruns_from_cache(tmp_path, capsys):
    store = tmp_path / "store.duckdb"
    assert main(["run", str(RECIPE), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "report: " in out and ".html" in out

    with open_store(store, read_only=True) as s:
        mix = s.read("tiny-default-mix").to_pylist()
        dialogues = s.read("tiny-default-self_dialogue").to_pylist()
        runs = s.runs()
    assert all(r["source"] in ("gold", "self_dialogue") for r in mix)
    assert len([r for r in mix if r["source"] == "gold"]) == 8
    usable = [d for d in dialogues if not json.loads(d["meta"]).get("excluded")]
    mixed = [r for r in mix if r["source"] == "self_dialogue"]
    assert len(mixed) == min(len(usable), 2)  # ratio 0.25 of 8 task rows; marked rows never mixed
    assert dialogues and all(d["model_fingerprint"] and d["seed"] is not None for d in dialogues)
    assert runs[-1]["status"] == "done"

    html = next(line.split()[1] for line in out.splitlines() if line.startswith("report: "))
    report_json = Path(html).with_name("report.json")
    report = json.loads(report_json.read_text())
    assert "arc_easy" in json.dumps(report)

    t0 = time.perf_counter()
    assert main(["run", str(RECIPE), "--store", str(store)]) == 0
    rerun = capsys.readouterr().out
    assert "0 step(s) ran" in rerun
    assert time.perf_counter() - t0 < 30

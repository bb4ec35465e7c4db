"""End to end on the real packaged model: `selfaug study run` of a shrunk lab study.

Slow; select with ``-m slow``. Asserts outcomes: every (arm, seed) ran into one store, runs
that differ only in their seed shared the base evaluations, the results file holds the
tables and plots, text outside the generated section survives, and a second invocation
does no model work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from selfaug_compiler.cli import main
from selfaug_compiler.store import open_store
from selfaug_compiler.study.markdown import markers

STUDY = Path(__file__).parent / "e2e" / "study"

pytestmark = pytest.mark.slow


def _copy_study(tmp_path: Path) -> Path:
    (tmp_path / ".selfaug").mkdir()  # tmp_path is the project: the arms may reach ../recipes/lab
    folder = tmp_path / "study"
    shutil.copytree(STUDY, folder)
    # the arms extend the lab's reference recipe by a relative path: keep it reachable
    lab = tmp_path / "recipes" / "lab"
    lab.mkdir(parents=True)
    shutil.copy(Path(__file__).parents[1] / "recipes" / "lab" / "sft.yaml", lab / "sft.yaml")
    (folder / "sft.yaml").write_text((folder / "sft.yaml").read_text().replace("../../../recipes/lab/sft.yaml",
                                                                                 "../recipes/lab/sft.yaml"))
    return folder


def test_tiny_study_runs_publishes_and_reruns_from_cache(tmp_path, capsys):
    folder = _copy_study(tmp_path)
    results = folder / "results.md"
    results.write_text("# Lab\n\nOur reading, kept across regenerations.\n")
    assert main(["study", "run", str(folder / "study.yaml")]) == 0
    out = capsys.readouterr().out
    assert "== [4/4] sft/seed1" in out and "4 run(s)" in out

    text = results.read_text()
    assert text.startswith("# Lab\n\nOur reading, kept across regenerations.")
    begin, end = markers("tiny-lab", "`selfaug study run study/study.yaml`")
    assert begin in text and end in text
    for needle in ("| sft |", "| s3ft |", "style_retention", "## Noise floor", "## Continual sequence",
                   "selfaug compare", "## Wall times",
                   "selfaug study run study/study.yaml"):  # relative to the root (no Makefile target here)
        assert needle in text, needle
    assert (folder / "results_files" / "tiny-lab" / "deltas.png").stat().st_size > 1000

    with open_store(folder / "store.duckdb", read_only=True) as store:
        runs = store.runs()
        base_evals = store.con.execute(
            "SELECT count(*) FROM step_runs WHERE step_name = 'eval.before.arc_easy' AND status = 'done'").fetchone()[0]
    assert len(runs) == 4
    assert base_evals == 1  # the base model was scored once for every arm and seed

    assert main(["study", "run", str(folder / "study.yaml")]) == 0
    again = capsys.readouterr().out
    assert ": running (" not in again and "done in" not in again  # every step of every run came from the store
    assert again.count(": cached (") >= 4 * 10
    assert results.read_text().count(begin) == 1

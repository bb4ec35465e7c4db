"""A newcomer's CLI: help shows flags as flags and TARGET (not `<bool>`, `{target}`), piped `data ls`
keeps whole names, every store-opening command names its store, unknown datasets get "did you mean"."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from selfaug_compiler.cli import main
from selfaug_compiler.store import open_store

ROOT = Path(__file__).resolve().parents[1]
LONG = "lab-s3ft-mix-with-a-rather-long-descriptive-name-that-a-narrow-table-would-cut"


def selfaug(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point with its output piped (not a terminal)."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80", **(env or {})}
    full.pop("SELFAUG_STORE", None)
    script = Path(sys.executable).with_name("selfaug")  # the console script `pip install -e .` wrote
    if not script.is_file():
        pytest.skip("the selfaug console script is not installed next to this Python")
    return subprocess.run([str(script), *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def test_help_shows_flags_as_flags_and_arguments_in_capitals(tmp_path):
    top = selfaug("--help", cwd=tmp_path)
    assert top.returncode == 0 and "Usage: selfaug [OPTIONS] COMMAND [ARGS]..." in top.stdout
    assert "<bool>" not in top.stdout and re.search(r"--help\s+Show this message", top.stdout)
    run = selfaug("run", "--help", cwd=tmp_path)
    assert "Usage: selfaug run [OPTIONS] TARGET" in run.stdout, run.stdout
    assert "<bool>" not in run.stdout and "{" not in run.stdout.split("\n\n")[1]
    assert re.search(r"--dry-run\s+print what would run", run.stdout) and re.search(r"--store\s+<path>", run.stdout)
    tag = selfaug("data", "tag", "--help", cwd=tmp_path)
    assert "Usage: selfaug data tag [OPTIONS] REF TAG" in tag.stdout
    diff = selfaug("data", "diff", "--help", cwd=tmp_path)
    assert "Usage: selfaug data diff [OPTIONS] A B" in diff.stdout and "--cells <bool>" not in diff.stdout


def _store_with(path: Path, *names: str) -> None:
    with open_store(path) as store:
        for name in names:
            store.commit(name, [{"prompt": "1+1?", "response": "2"}])


def test_piped_data_ls_keeps_long_names_and_names_the_store(tmp_path):
    _store_with(tmp_path / ".selfaug" / "lab.duckdb", LONG, "short")
    out = selfaug("data", "ls", "--store", ".selfaug/lab.duckdb", cwd=tmp_path)
    assert out.returncode == 0 and LONG in out.stdout and "…" not in out.stdout
    assert f"datasets in {tmp_path.resolve() / '.selfaug' / 'lab.duckdb'}" in out.stdout
    empty = selfaug("data", "ls", cwd=tmp_path)  # the default store, which the lab does not use
    assert empty.stdout.strip() == (f"No store at {tmp_path.resolve() / '.selfaug' / 'store.duckdb'} (from the default), "
                                    "so no datasets; other stores next to it: --store .selfaug/lab.duckdb "
                                    "(e.g. selfaug data ls --store .selfaug/lab.duckdb)")
    assert empty.stderr == ""  # said once (issue 16): no second "it does not exist yet" on stderr


@pytest.mark.parametrize("args", [["show", "lab-sft-mux"], ["log", "lab-sft-mux"], ["export", "lab-sft-mux", "-o", "x.jsonl"],
                                  ["tag", "lab-sft-mux@1", "base"], ["diff", "lab-sft-mux", "short"]])
def test_unknown_datasets_get_did_you_mean_and_the_store(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SELFAUG_STORE", raising=False)
    store = tmp_path / "lab.duckdb"
    _store_with(store, "lab-sft-mix", "lab-s3ft-mix", "short")
    _store_with(tmp_path / "store.duckdb", "other")
    assert main(["data", args[0], *args[1:], "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'lab-sft-mux'" in err and f"(store {store.resolve()})" in err
    assert "did you mean lab-sft-mix" in err and "other stores next to it: --store store.duckdb" in err


def test_missing_store_is_named_with_its_neighbours(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SELFAUG_STORE", raising=False)
    _store_with(tmp_path / ".selfaug" / "lab.duckdb", "lab-sft-mix")
    assert main(["data", "diff", "lab-sft-mix", "lab-s3ft-mix"]) == 2
    err = capsys.readouterr().err
    assert f"no store at {tmp_path.resolve() / '.selfaug' / 'store.duckdb'}" in err
    assert "other stores next to it: --store .selfaug/lab.duckdb" in err


def test_run_dry_run_names_its_store_and_creates_none(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SELFAUG_STORE", raising=False)
    _store_with(tmp_path / ".selfaug" / "lab.duckdb", "lab-sft-mix")
    assert main(["run", str(ROOT / "recipes" / "lab" / "sft.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    default = tmp_path.resolve() / ".selfaug" / "store.duckdb"
    assert out[0] == (f"store: {default} (from the default); it does not exist yet "
                      "(other stores next to it: --store .selfaug/lab.duckdb)")
    assert out[-1].startswith("0 of ") and out[-1].endswith(
        f"step(s) cached in {default} (it does not exist; other stores next to it: --store .selfaug/lab.duckdb; "
        f"e.g. selfaug run {ROOT / 'recipes' / 'lab' / 'sft.yaml'} --dry-run --store .selfaug/lab.duckdb)")
    assert not default.exists()
    assert main(["run", str(ROOT / "recipes" / "lab" / "sft.yaml"), "--dry-run", "--store", ".selfaug/lab.duckdb"]) == 0
    assert capsys.readouterr().out.startswith(f"store: {tmp_path.resolve() / '.selfaug' / 'lab.duckdb'} (from --store)\n")


def test_study_names_its_store_and_ends_with_where_things_are(tmp_path, monkeypatch, capsys):
    from selfaug_compiler.cli.study_cmds import _print_where
    from selfaug_compiler.study.run import StudyRun
    from selfaug_compiler.study.spec import RunKey

    monkeypatch.chdir(tmp_path)
    assert main(["study", "run", str(ROOT / "studies" / "demo.yaml"), "--dry-run", "--store", "lab.duckdb"]) == 0
    assert capsys.readouterr().out.startswith(f"store: {tmp_path.resolve() / 'lab.duckdb'} (from --store)")
    report = tmp_path / "artifacts" / "report-abc" / "report.json"
    report.parent.mkdir(parents=True)
    report.write_text("{}")
    report.with_name("report.html").write_text("<html></html>")
    run = StudyRun(RunKey("sft", 0), tmp_path / "sft.yaml", report, {}, 0.0)
    _print_where(tmp_path / "lab.duckdb", [run], tmp_path / "out" / "results.md")
    assert capsys.readouterr().out.splitlines()[-3:] == [
        f"  store    {tmp_path / 'lab.duckdb'}  (selfaug data ls --store lab.duckdb)",
        f"  report   {report.with_name('report.html')}  (sft/seed0)",
        f"  results  {tmp_path / 'out' / 'results.md'}"]

"""Hostile cases against the store, through the real CLI: damaged files, read-only folders, a
full disk, bad export targets, bad names and versions, runs killed with SIGKILL.

Each case asserts the exit code, no traceback, the time limit, the cause in the message and that
the store is left as it was (it still verifies, or its bytes are unchanged when we damaged it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.hostile.store_cli import (
    assert_clean, assert_verifies, immutable, read_only_view, selfaug, tmpfs, write_rows,
)


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> Path:
    """A store with one dataset ``ds`` (40 rows), made by the CLI."""
    folder = tmp_path_factory.mktemp("good")
    write_rows(folder / "d.jsonl", 40)
    assert_clean(selfaug("data", "--store", "s.duckdb", "import", "d.jsonl", "--dataset", "ds", "--key", "id",
                         cwd=folder), 0)
    return folder / "s.duckdb"


@pytest.fixture
def work(tmp_path, good_store) -> Path:
    shutil.copy(good_store, tmp_path / "s.duckdb")
    write_rows(tmp_path / "d.jsonl", 5)
    return tmp_path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _truncate(path: Path, keep: int) -> None:
    with path.open("r+b") as f:
        f.truncate(keep)


def _overwrite(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(bytes(range(7, 7 + 64)))


# ------------------------------------------------------------------ class 1: a damaged store file
DAMAGE = [
    ("empty file", lambda p: _truncate(p, 0)),
    ("truncated in the header", lambda p: _truncate(p, 100)),
    ("truncated after the headers", lambda p: _truncate(p, 20000)),
    ("truncated mid-file", lambda p: _truncate(p, p.stat().st_size // 3)),
    ("header overwritten", lambda p: _overwrite(p, 8)),
    ("metadata block overwritten", lambda p: _overwrite(p, 4096 + 8)),
    ("random bytes", lambda p: p.write_bytes(os.urandom(5000))),
]


@pytest.mark.parametrize("how, damage", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_store_is_reported_not_crashed_on(work, how, damage):
    store = work / "s.duckdb"
    damage(store)
    before = _digest(store)
    for args in (["ls"], ["show", "ds"], ["import", "d.jsonl", "--dataset", "ds2"]):
        assert_clean(selfaug("data", "--store", "s.duckdb", *args, cwd=work), 2, "damaged", "backup")
    verify = selfaug("data", "--store", "s.duckdb", "verify", cwd=work)
    assert_clean(verify, 1, "FAILED", "damaged", "hint:")
    assert _digest(store) == before  # nothing wrote to it


def test_damage_in_a_data_block_is_found_by_verify(work):
    """Damage that `data ls` never reads (a table's data block): verify reads every table."""
    store = work / "s.duckdb"
    sizes = [n for n in range(262144, store.stat().st_size - 4096, 262144)]
    found = 0
    for offset in sizes:
        shutil.copy(store, work / "c.duckdb")
        _overwrite(work / "c.duckdb", offset + 100)
        result = selfaug("data", "--store", "c.duckdb", "verify", cwd=work)
        assert "Traceback" not in result.output, result.output
        assert result.code in (0, 1), result.output
        found += result.code == 1 and "damaged" in result.output
    assert found >= 1  # at least one block held table data and was reported


def test_store_path_that_is_a_folder(work):
    assert_clean(selfaug("data", "--store", str(work), "import", "d.jsonl", "--dataset", "x", cwd=work), 2,
                 "is a folder")


# ------------------------------------------------------------------ class 1: read-only store folders
def test_read_only_mount_reads_work_writes_refused(work, tmp_path_factory):
    view = tmp_path_factory.mktemp("view")
    with read_only_view(work, view):
        assert_clean(selfaug("data", "--store", str(view / "s.duckdb"), "ls", cwd=work), 0, "ds")
        assert_verifies(view / "s.duckdb", work)
        for args in (["import", "d.jsonl", "--dataset", "ds2"], ["tag", "ds@1", "v1"], ["gc"]):
            assert_clean(selfaug("data", "--store", str(view / "s.duckdb"), *args, cwd=work), 2,
                         "read-only", "writable")
        new_store = view / "sub" / "new.duckdb"
        assert_clean(selfaug("data", "--store", str(new_store), "import", "d.jsonl", "--dataset", "x", cwd=work), 2,
                     "read-only")
    assert_verifies(work / "s.duckdb", work)


def test_immutable_store_folder_refuses_the_wal(work):
    """The file is writable but its folder is not: DuckDB fails creating the .wal at commit."""
    folder = work / "locked"
    folder.mkdir()
    shutil.copy(work / "s.duckdb", folder / "s.duckdb")
    before = _digest(folder / "s.duckdb")
    with immutable(folder):
        for args in (["import", "d.jsonl", "--dataset", "ds2"], ["tag", "ds@1", "baseline"]):
            assert_clean(selfaug("data", "--store", "locked/s.duckdb", *args, cwd=work), 2, "read-only", ".wal")
        assert_verifies(folder / "s.duckdb", work)
    assert _digest(folder / "s.duckdb") == before


# ------------------------------------------------------------------ class 1: a full disk
@pytest.mark.parametrize("size, rows", [("4m", 30000), ("6m", 60000)])
def test_full_disk_during_import(work, size, rows):
    write_rows(work / "big.jsonl", rows, pad=60)
    with tmpfs(work / "disk", size) as disk:
        store = disk / "s.duckdb"
        assert_clean(selfaug("data", "--store", str(store), "import", "d.jsonl", "--dataset", "small", cwd=work), 0)
        result = selfaug("data", "--store", str(store), "import", "big.jsonl", "--dataset", "big", "--key", "id",
                         cwd=work)
        assert_clean(result, 2, "disk", "full", "free space", limit_s=30)
        assert_verifies(store, work)
        listed = selfaug("data", "--store", str(store), "ls", "--format", "json", cwd=work)
        assert [d["name"] for d in __import__("json").loads(listed.stdout)] == ["small"]


RECIPE = """\
name: hostile
task:
  name: toy
  source: {{kind: file, path: {data}}}
  fields: {{prompt: question, response: answer, id: id}}
  answer_type: number
  split: {{train: {train}, heldout: 5, seed: 0}}
eval: {{retention: [], in_domain: []}}
store: {{path: disk/store.duckdb}}
model: {{ref: "packaged:smollm2-135m-instruct"}}
"""


def test_full_disk_during_a_run_fails_the_step_and_resumes(work):
    """The step's commit fills the disk: the step fails (exit 1) with the cause, the store verifies."""
    write_rows(work / "big.jsonl", 40000, pad=100)
    (work / "big.yaml").write_text(RECIPE.format(data="big.jsonl", train=30000))
    with tmpfs(work / "disk", "4m") as disk:
        failed = selfaug("run", "big.yaml", "--until", "ingest.*", cwd=work)
        assert_clean(failed, 1, "ingest.toy failed", "disk is full", "run again", limit_s=30)
        assert_verifies(disk / "store.duckdb", work)


def test_full_disk_for_the_run_records(work):
    """The disk filled by something else: the run and step records cannot be written."""
    write_rows(work / "small.jsonl", 20)
    (work / "small.yaml").write_text(RECIPE.format(data="small.jsonl", train=10))
    (work / "small2.yaml").write_text(RECIPE.format(data="small.jsonl", train=11))
    with tmpfs(work / "disk", "8m") as disk:
        assert_clean(selfaug("run", "small.yaml", "--until", "ingest.*", cwd=work), 0)
        filler = disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        for recipe in ("small2.yaml", "small.yaml"):
            assert_clean(selfaug("run", recipe, "--until", "ingest.*", cwd=work), 2, "disk", "full", "free space")
        filler.unlink()
        assert_verifies(disk / "store.duckdb", work)
        again = selfaug("run", "small2.yaml", "--until", "ingest.*", cwd=work)
        assert_clean(again, 0, "1 step(s) ran")


# ------------------------------------------------------------------ class 1: export targets
@pytest.mark.parametrize("target, words", [
    ("outdir.jsonl", ["is a folder"]),
    ("outdir.parquet", ["is a folder"]),
    ("/proc/selfaug-export.jsonl", ["cannot write"]),
    ("/proc/no/such/x.parquet", ["cannot write"]),
    ("d.jsonl/inside.jsonl", ["cannot write"]),
])
def test_export_to_a_folder_or_unwritable_path(work, target, words):
    (work / "outdir.jsonl").mkdir()
    (work / "outdir.parquet").mkdir()
    assert_clean(selfaug("data", "--store", "s.duckdb", "export", "ds", "-o", target, cwd=work), 2, *words)
    assert_verifies(work / "s.duckdb", work)
    assert not list(work.glob(".*.tmp"))


def test_export_into_a_read_only_folder(work, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    view = tmp_path_factory.mktemp("outview")
    with read_only_view(out, view):
        for name in ("x.jsonl", "x.parquet", "sub/x.jsonl"):
            assert_clean(selfaug("data", "--store", "s.duckdb", "export", "ds", "-o", str(view / name), cwd=work), 2,
                         "cannot write", "Read-only")
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------ class 3: names, tags, versions
BAD_NAMES = ["bad\nname", "tab\tname", "nul\x01x", "esc\x1b[31mred", "x" * 129, "y" * 5000, "has space", "a@b", "é"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[f"name{i}" for i in range(len(BAD_NAMES))])
def test_bad_dataset_names_and_tags_are_refused(work, name):
    if "\x00" in name:
        pytest.skip("argv cannot hold NUL")
    assert_clean(selfaug("data", "--store", "s.duckdb", "import", "d.jsonl", "--dataset", name, cwd=work), 2,
                 "invalid dataset name")
    assert_clean(selfaug("data", "--store", "s.duckdb", "tag", "ds@1", name, cwd=work), 2, "invalid tag")
    assert_verifies(work / "s.duckdb", work)
    listed = selfaug("data", "--store", "s.duckdb", "ls", "--format", "json", cwd=work)
    assert [d["name"] for d in __import__("json").loads(listed.stdout)] == ["ds"]


def test_error_messages_clip_absurd_names(work):
    result = selfaug("data", "--store", "s.duckdb", "import", "d.jsonl", "--dataset", "z" * 100000, cwd=work)
    assert_clean(result, 2, "invalid dataset name", "100000 characters")
    assert len(result.output) < 2000


@pytest.mark.parametrize("ref", ["ds@", "ds@@", "@", "@1", "ds@ ", "ds@1@"])
def test_empty_or_malformed_versions_are_errors(work, ref):
    checks = [["show", ref], ["export", ref, "-o", "x.jsonl"]]
    checks += [] if ref == "@1" else [["diff", "ds@1", ref]]  # `diff A @1`: @1 of A's dataset, valid
    for args in checks:
        result = selfaug("data", "--store", "s.duckdb", *args, cwd=work)
        assert_clean(result, 2)
        assert "error" in result.output
    assert not (work / "x.jsonl").exists()


def test_latest_still_resolves(work):
    assert_clean(selfaug("data", "--store", "s.duckdb", "show", "ds", cwd=work), 0, "ds@1")
    assert_clean(selfaug("data", "--store", "s.duckdb", "show", "ds@1", cwd=work), 0, "ds@1")


# ------------------------------------------------------------------ class 5: runs killed with SIGKILL
DRIVER = """
import sys, time
from selfaug_compiler import runner as R
from selfaug_compiler.plan import Plan, Step
from selfaug_compiler.runtime import StepResult

def slow(ctx):
    print("STEP", flush=True)
    time.sleep(120)
    return StepResult()

import __main__
__main__.slow = slow
for k in R.EXECUTORS:
    R.EXECUTORS[k] = "__main__:slow"
plan = Plan(recipe_name="toy", recipe_hash="h", steps=[Step("ingest.t", "ingest", params={"n": sys.argv[2]})])
plan.assign_ids()
R.Runner(plan, store_path=sys.argv[1], recipe_dir=".").run(plan.topological())
"""


def _killed_run(work: Path, store: Path, tag: str) -> None:
    """Start a run in another process and kill -9 it mid-step."""
    (work / "driver.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, str(work / "driver.py"), str(store), tag], stdout=subprocess.PIPE,
                            text=True, env=env, cwd=work)
    _wait_for_step(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_for_step(proc: subprocess.Popen) -> None:
    for line in proc.stdout:
        if line.strip() == "STEP":
            return
    raise AssertionError(f"the driver ended before its step (exit {proc.wait()})")


def _runs(work: Path, store: Path) -> dict[str, str]:
    code = textwrap.dedent(f"""
        from selfaug_compiler.store import open_store
        with open_store({str(store)!r}, read_only=True) as s:
            print({{r["run_id"]: r["status"] for r in s.runs()}})
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=work,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    return eval(out.stdout)  # noqa: S307 - our own dict literal


def test_killed_run_is_marked_dead_by_verify(work):
    store = work / "s.duckdb"
    _killed_run(work, store, "a")
    assert list(_runs(work, store).values()) == ["running"]
    _killed_run(work, store, "b")  # its start found run a's process gone
    assert sorted(_runs(work, store).values()) == ["dead", "running"]
    verify = selfaug("data", "--store", "s.duckdb", "verify", cwd=work)
    assert_clean(verify, 0, "ok:", "dead_runs 1", "process that is gone")
    assert sorted(_runs(work, store).values()) == ["dead", "dead"]
    assert_clean(selfaug("data", "--store", "s.duckdb", "verify", cwd=work), 0, "dead_runs 0")


def test_killed_run_is_marked_dead_by_the_next_run(work):
    store = work / "s.duckdb"
    _killed_run(work, store, "c")
    write_rows(work / "small.jsonl", 20)
    (work / "small.yaml").write_text(RECIPE.format(data="small.jsonl", train=10).replace("disk/store.duckdb",
                                                                                          "s.duckdb"))
    result = selfaug("run", "small.yaml", "--until", "ingest.*", cwd=work)
    assert_clean(result, 0, "recorded as dead")
    statuses = _runs(work, store)
    assert sorted(statuses.values()) == ["dead", "done"]


def _fake_run(store: Path, run_id: str, pid: int, start: str | None) -> None:
    from selfaug_compiler.store import open_store

    with open_store(store) as s:
        s.start_run(run_id, "h", {"steps": []})
        s.con.execute("UPDATE runs SET pid = ?, proc_start = ? WHERE run_id = ?", [pid, start, run_id])


def test_a_live_run_is_not_marked_dead_and_a_reused_pid_is(work):
    """A run whose process lives stays running; one whose pid now belongs to a process started at
    another time (a reused pid) is dead; so is one whose process then exits."""
    from selfaug_compiler.store.liveness import process_start

    store = work / "s.duckdb"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        _fake_run(store, "live", sleeper.pid, process_start(sleeper.pid))
        _fake_run(store, "reused", sleeper.pid, "some-other-boot:12345")
        assert_clean(selfaug("data", "--store", "s.duckdb", "verify", cwd=work), 0, "dead_runs 1", "reused")
        assert _runs(work, store) == {"live": "running", "reused": "dead"}
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)
    assert_clean(selfaug("data", "--store", "s.duckdb", "verify", cwd=work), 0, "dead_runs 1", "run live")
    assert _runs(work, store) == {"live": "dead", "reused": "dead"}

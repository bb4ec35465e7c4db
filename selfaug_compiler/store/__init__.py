"""The versioned dataset store (DuckDB). Every step reads and writes datasets through this API.

Open per command or step, not for a whole run (one writer at a time; readers lock too)::

    store = open_store(path=None, *, recipe_store_path=None, read_only=False, wait_s=None)
    # path: explicit (--store) > $SELFAUG_STORE > recipe store.path > .selfaug/store.duckdb
    # wait_s: how long to wait for another process's lock ($SELFAUG_STORE_WAIT, default 5 s);
    #         then SelfaugError "store X is in use by another process (pid N)".

Datasets and versions (versions are immutable; ``Version.ref`` is ``name@<content id>``):
    store.commit(dataset, rows, *, step_id=None, parent="latest", recipe_hash=None, message=None,
                 key_field=None, from_stage=None) -> Version
        rows: pyarrow Table or iterable of dicts with the row columns (``rows.ROW_SCHEMA``).
        One transaction. Same rows from the same step again -> the existing Version, nothing
        stored. Duplicate key -> SelfaugError naming it, store unchanged.
    store.resolve("NAME" | "NAME@3" | "NAME@<id prefix>" | "NAME@tag") -> Version
    store.read(ref) -> pyarrow.Table (ordered by key); read_pandas(ref); read_hf(ref)
    store.datasets() -> [dict]; store.log(name) -> [Version]; store.tag(ref, tag)
    store.version_for_step(step_id, dataset=None) -> Version | None
    store.diff(a, b, cells=0) -> DatasetDiff (.to_dict(), .summary())
Staging (per-batch commits of long steps; a killed step resumes from what it staged):
    store.stage(step_id, rows) (one transaction), store.staged(step_id) -> Table,
    store.commit(..., from_stage=step_id) commits staged (+ given) rows and clears the stage.
Runs, artifacts, eval cache:
    start_run(run_id, recipe_hash, plan_json) -> ids of runs it found dead (owner process gone;
    dead_runs(), mark_dead_runs() do the same check), record_step(run_id, step_name, step_id, status,
    started_at, ended_at, result_json, error=None), finish_run(run_id, status), runs(),
    run_steps(run_id), step_result(step_id) -> dict | None (latest with status ok/done/success/cached),
    put_artifact(step_id, kind, path, fingerprint, meta_json) / artifact(step_id),
    put_eval(model_fp, bench_fp, benchmark, metrics_json, items) / get_eval(model_fp, bench_fp)
        -> (metrics, items as Arrow) | None
Integrity: store.verify() -> VerifyReport (a damaged file is reported); store.gc() -> rows removed.
A running step's ``ctx.store`` is a ``per_use.PerUseStore(path)``: the same methods, each on its own
connection (nothing held during model work); ``per_use.run_lock(path)`` keeps a second run out.
Faults of the file (damaged, disk full, read-only, newer format) raise ``faults.StoreFault``.
"""

from __future__ import annotations

from selfaug_compiler.store.core import Store, open_store
from selfaug_compiler.store.diff import DatasetDiff
from selfaug_compiler.store.lock import DEFAULT_STORE, resolve_store_path
from selfaug_compiler.store.rows import ROW_COLUMNS, ROW_SCHEMA, SOURCES, normalize_rows
from selfaug_compiler.store.versions import Version

__all__ = [
    "DEFAULT_STORE", "DatasetDiff", "ROW_COLUMNS", "ROW_SCHEMA", "SOURCES", "Store", "Version",
    "normalize_rows", "open_store", "resolve_store_path",
]

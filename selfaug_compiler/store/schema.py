"""Store tables and forward migrations.

``MIGRATIONS[i]`` takes a store from schema version ``i`` to ``i + 1`` (version 0 = empty file).
A new schema version appends a function; existing ones are never edited, so any older store
migrates forward on open. The version lives in ``meta`` (key ``schema_version``).
"""

from __future__ import annotations

from typing import Callable

from selfaug_compiler.store.rows import ROW_COLUMNS_DDL


def _v1_datasets_versions_rows(con) -> None:
    """v1: datasets, immutable versions, rows shared between versions, tags."""
    con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("CREATE TABLE datasets (name VARCHAR PRIMARY KEY, created_at TIMESTAMP)")
    con.execute(
        """CREATE TABLE versions (
            vid BIGINT PRIMARY KEY, dataset VARCHAR NOT NULL, seq INTEGER NOT NULL,
            id VARCHAR NOT NULL, parent VARCHAR, step_id VARCHAR, recipe_hash VARCHAR,
            message VARCHAR, created_at TIMESTAMP, n_rows BIGINT, rows_digest VARCHAR,
            UNIQUE (dataset, seq), UNIQUE (dataset, id))"""
    )
    con.execute(f"CREATE TABLE rows (row_hash UHUGEINT, content_hash VARCHAR, {ROW_COLUMNS_DDL})")
    con.execute("CREATE TABLE version_rows (vid BIGINT, row_hash UHUGEINT)")
    con.execute("CREATE TABLE tags (dataset VARCHAR, tag VARCHAR, id VARCHAR, PRIMARY KEY (dataset, tag))")


def _v2_staging_runs_artifacts_evals(con) -> None:
    """v2: staging for per-batch commits, run records, artifacts, cached eval results."""
    con.execute(
        f"CREATE TABLE staged (stage_id VARCHAR, batch BIGINT, staged_at TIMESTAMP, {ROW_COLUMNS_DDL})"
    )
    con.execute(
        """CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, recipe_hash VARCHAR, plan_json VARCHAR,
            status VARCHAR, started_at TIMESTAMP, ended_at TIMESTAMP)"""
    )
    con.execute(
        """CREATE TABLE step_runs (run_id VARCHAR, step_name VARCHAR, step_id VARCHAR,
            status VARCHAR, started_at TIMESTAMP, ended_at TIMESTAMP, result_json VARCHAR,
            error VARCHAR, recorded_at TIMESTAMP)"""
    )
    con.execute(
        """CREATE TABLE artifacts (step_id VARCHAR PRIMARY KEY, kind VARCHAR, path VARCHAR,
            fingerprint VARCHAR, meta_json VARCHAR, created_at TIMESTAMP)"""
    )
    con.execute(
        """CREATE TABLE evals (model_fp VARCHAR, bench_fp VARCHAR, benchmark VARCHAR,
            metrics_json VARCHAR, created_at TIMESTAMP, PRIMARY KEY (model_fp, bench_fp))"""
    )
    con.execute(
        "CREATE TABLE eval_items (model_fp VARCHAR, bench_fp VARCHAR, idx BIGINT, item_json VARCHAR)"
    )


def _v3_run_owner(con) -> None:
    """v3: the process that owns a run (pid, host, process start), so a run whose process was
    killed (``kill -9``) can be told from one still running and recorded as dead."""
    for column in ("pid BIGINT", "host VARCHAR", "proc_start VARCHAR"):
        con.execute(f"ALTER TABLE runs ADD COLUMN {column}")


MIGRATIONS: list[Callable] = [_v1_datasets_versions_rows, _v2_staging_runs_artifacts_evals, _v3_run_owner]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(con) -> int:
    """The store's schema version (0 for a fresh file)."""
    has_meta = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
    ).fetchall()[0][0]
    if not has_meta:
        return 0
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    return int(row[0][0]) if row else 0


def migrate(con, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations from the store's version up to ``target``, each in one transaction."""
    current = schema_version(con)
    if current > SCHEMA_VERSION:
        from selfaug_compiler.errors import SelfaugError

        raise SelfaugError(
            f"the store has schema version {current}, newer than this selfaug ({SCHEMA_VERSION})",
            hint="upgrade selfaug to open this store",
        )
    while current < target:
        con.execute("BEGIN TRANSACTION")
        try:
            MIGRATIONS[current](con)
            current += 1
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(current)]
            )
            con.execute("COMMIT")
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - a failed COMMIT already ended it; report the first error
                pass
            raise
    return current

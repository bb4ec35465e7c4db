"""The ``Store`` object: one open DuckDB connection and the API every step calls.

Open it per command or step (``open_store``), not for a whole run: DuckDB lets one process
write at a time, and readers hold a lock too. Each write method is one transaction.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.store import commit as C
from selfaug_compiler.store import records
from selfaug_compiler.store.faults import guard_methods, reraise_as_fault
from selfaug_compiler.store import versions as V
from selfaug_compiler.store.lock import connect, default_wait_s, resolve_store_path
from selfaug_compiler.store.rows import ROW_COLUMNS, ROW_SCHEMA, normalize_rows
from selfaug_compiler.store.schema import SCHEMA_VERSION, migrate, schema_version
from selfaug_compiler.store.versions import Version

_tmp_counter = itertools.count()


@guard_methods  # a damaged file, a full disk or a read-only folder: one StoreFault message
class Store:
    """A versioned dataset store in one DuckDB file. Build it with ``open_store``."""

    def __init__(self, con, path: Path, read_only: bool) -> None:
        self.con = con
        self.path = path
        self.read_only = read_only

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # already failing: closing a connection DuckDB invalidated must not hide why
            self.close()
        except Exception:  # noqa: BLE001
            self.con = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One DuckDB transaction: all or nothing, also when the process is killed."""
        self._writable()
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            _quietly(self.con.execute, "ROLLBACK")  # fails when DuckDB invalidated the database
            raise
        self.con.execute("COMMIT")

    def _writable(self) -> None:
        if self.read_only:
            raise SelfaugError(f"store {self.path} was opened read-only", hint="open it with read_only=False")

    # ------------------------------------------------------------------ datasets and versions
    def commit(self, dataset: str, rows: pa.Table | Iterable[dict] | None = None, *,
               step_id: str | None = None, parent: str | None = "latest", recipe_hash: str | None = None,
               message: str | None = None, key_field: str | None = None,
               from_stage: str | None = None) -> Version:
        """Commit rows (and, with ``from_stage``, the rows staged under that id) as one version.

        Returns the existing version when the same rows (metadata included) from the same step
        are already the dataset's latest version or already have the computed id.
        ``parent``: "latest" (default), None (a root version) or a version reference.
        """
        self._writable()
        V.check_name(dataset)
        table = normalize_rows(rows if rows is not None else ROW_SCHEMA.empty_table(), key_field)
        tmp = f"_commit_{next(_tmp_counter)}"
        failed = False
        try:
            C.prepare(self.con, table, tmp, stage_id=from_stage)
            C.check_keys(self.con, tmp, dataset)
            parent_id, same = self._parent_for(dataset, parent, tmp, step_id)
            if same is not None:
                return self._unchanged(same, from_stage)
            n_rows, content_digest, rows_digest = C.digests(self.con, tmp)
            vid_id = V.version_id(content_digest, parent_id, step_id)
            existing = V.find_existing(self.con, dataset, vid_id)
            if existing is not None and existing.rows_digest == rows_digest:
                return self._unchanged(existing, from_stage)
            if existing is not None:  # same payload, same parent and step, different metadata
                parent_id = existing.id
                vid_id = V.version_id(content_digest, parent_id, step_id)
            with self.transaction():
                C.write_version(self.con, tmp, dataset=dataset, vid_id=vid_id, parent=parent_id, step_id=step_id,
                                recipe_hash=recipe_hash, message=message, n_rows=n_rows,
                                rows_digest=rows_digest, stage_id=from_stage)
            return V.find_existing(self.con, dataset, vid_id)
        except BaseException:
            failed = True
            raise
        finally:
            if failed:  # the first error is the one to report
                _quietly(C.release, self.con, tmp)
            else:
                C.release(self.con, tmp)

    def _unchanged(self, version: Version, from_stage: str | None) -> Version:
        if from_stage is not None:
            self.clear_stage(from_stage)
        return version

    def _parent_for(self, dataset: str, parent: str | None, tmp: str,
                    step_id: str | None) -> tuple[str | None, Version | None]:
        """(parent id, the latest version when the incoming rows are exactly it from the same step)."""
        if parent is None:
            return None, None
        if parent == "latest":
            last = V.latest(self.con, dataset)
            if last is None:
                return None, None
            if last.step_id == step_id and C.same_rows(self.con, tmp, last):
                return last.id, last
            return last.id, None
        ref = parent if "@" in parent else f"{dataset}@{parent}"
        return V.resolve(self.con, ref).id, None

    def resolve(self, ref: str) -> Version:
        return V.resolve(self.con, ref)

    def read(self, ref: str | Version, *, with_hashes: bool = False) -> pa.Table:
        version = ref if isinstance(ref, Version) else self.resolve(ref)
        return V.read(self.con, version, with_hashes=with_hashes)

    def read_pandas(self, ref: str | Version):
        return self.read(ref).to_pandas()

    def read_hf(self, ref: str | Version):
        import datasets  # heavy: only when asked for

        return datasets.Dataset(self.read(ref))

    def datasets(self) -> list[dict[str, Any]]:
        rows = self.con.execute(
            "SELECT d.name, count(v.vid), max(v.seq), arg_max(v.id, v.seq), arg_max(v.n_rows, v.seq), "
            "max(v.created_at) FROM datasets d JOIN versions v ON v.dataset = d.name GROUP BY d.name ORDER BY d.name"
        ).fetchall()
        keys = ("name", "versions", "latest_seq", "latest_id", "rows", "updated_at")
        return [dict(zip(keys, r)) for r in rows]

    def log(self, name: str) -> list[Version]:
        return V.log(self.con, name)

    def tag(self, ref: str, tag: str) -> Version:
        version = self.resolve(ref)
        with self.transaction():
            V.tag(self.con, version, tag)
        return self.resolve(f"{version.dataset}@{version.id}")

    def version_for_step(self, step_id: str, dataset: str | None = None) -> Version | None:
        return V.version_for_step(self.con, step_id, dataset)

    def diff(self, a: str | Version, b: str | Version, *, cells: int = 0):
        from selfaug_compiler.store.diff import diff_versions

        va = a if isinstance(a, Version) else self.resolve(a)
        vb = b if isinstance(b, Version) else self.resolve(b)
        return diff_versions(self.con, va, vb, cells=cells)

    # ------------------------------------------------------------------ staging
    def stage(self, step_id: str, rows: pa.Table | Iterable[dict], *, key_field: str | None = None) -> int:
        """Stage one batch of rows for ``step_id`` (one transaction). Returns rows staged."""
        table = normalize_rows(rows, key_field)
        self.con.register("_stage_in", table)
        try:
            with self.transaction():
                batch = self.con.execute("SELECT coalesce(max(batch), 0) + 1 FROM staged WHERE stage_id = ?",
                                         [step_id]).fetchall()[0][0]
                cols = ", ".join(ROW_COLUMNS)
                self.con.execute(f"INSERT INTO staged SELECT ?, ?, now(), {cols} FROM _stage_in", [step_id, batch])
        finally:
            self.con.unregister("_stage_in")
        return table.num_rows

    def staged(self, step_id: str) -> pa.Table:
        cols = ", ".join(ROW_COLUMNS)
        return self.con.sql(f"SELECT {cols} FROM staged WHERE stage_id = ? ORDER BY batch",
                            params=[step_id]).to_arrow_table()

    def clear_stage(self, step_id: str) -> None:
        with self.transaction():
            self.con.execute("DELETE FROM staged WHERE stage_id = ?", [step_id])

    # ------------------------------------------------------------------ runs, artifacts, evals
    def start_run(self, run_id: str, recipe_hash: str, plan_json: Any) -> list[str]:
        """Record a run owned by this process; returns the runs it found dead (their process gone)."""
        with self.transaction():
            return records.start_run(self.con, run_id, recipe_hash, plan_json)

    def dead_runs(self) -> list[str]:
        return records.dead_runs(self.con)

    def mark_dead_runs(self) -> list[str]:
        with self.transaction():
            return records.mark_dead_runs(self.con)

    def record_step(self, run_id: str, step_name: str, step_id: str, status: str, started_at: Any,
                    ended_at: Any, result_json: Any, error: str | None = None) -> None:
        with self.transaction():
            records.record_step(self.con, run_id, step_name, step_id, status, started_at, ended_at, result_json, error)

    def finish_run(self, run_id: str, status: str) -> None:
        with self.transaction():
            records.finish_run(self.con, run_id, status)

    def runs(self) -> list[dict[str, Any]]:
        return records.runs(self.con)

    def run_steps(self, run_id: str) -> list[dict[str, Any]]:
        return records.run_steps(self.con, run_id)

    def step_result(self, step_id: str) -> dict | None:
        return records.step_result(self.con, step_id)

    def step_seconds(self, step_id: str) -> float | None:
        return records.step_seconds(self.con, step_id)

    def put_artifact(self, step_id: str, kind: str, path: str, fingerprint: str, meta_json: Any = None) -> None:
        with self.transaction():
            records.put_artifact(self.con, step_id, kind, path, fingerprint, meta_json)

    def artifact(self, step_id: str) -> dict | None:
        return records.artifact(self.con, step_id)

    def put_eval(self, model_fp: str, bench_fp: str, benchmark: str, metrics_json: Any, items: list[dict]) -> None:
        with self.transaction():
            records.put_eval(self.con, model_fp, bench_fp, benchmark, metrics_json, items)

    def get_eval(self, model_fp: str, bench_fp: str):
        return records.get_eval(self.con, model_fp, bench_fp)

    # ------------------------------------------------------------------ integrity
    def verify(self):
        from selfaug_compiler.store.verify import verify

        return verify(self.con, self.path)

    def gc(self) -> int:
        from selfaug_compiler.store.verify import gc

        self._writable()
        return gc(self)


def _quietly(func, *args: Any) -> None:
    """Call ``func`` for cleanup while another error propagates; its own failure is dropped."""
    try:
        func(*args)
    except Exception:  # noqa: BLE001
        pass


def open_store(path: str | Path | None = None, *, recipe_store_path: str | None = None,
               read_only: bool = False, wait_s: float | None = None) -> Store:
    """Open (and create or migrate) a store. Path: explicit > $SELFAUG_STORE > recipe > default."""
    resolved = resolve_store_path(path, recipe_store_path)
    wait = default_wait_s() if wait_s is None else wait_s
    con = connect(resolved, read_only=read_only, wait_s=wait)
    try:
        version = schema_version(con)
        if version < SCHEMA_VERSION and read_only:  # migrate once with a writable connection, then reopen
            con.close()
            con = None
            _migrate_for_reading(resolved, wait)
            con = connect(resolved, read_only=True, wait_s=wait)
        elif version < SCHEMA_VERSION:
            migrate(con)
        elif version > SCHEMA_VERSION:
            raise SelfaugError(f"store {resolved} has schema version newer than this selfaug ({SCHEMA_VERSION})",
                               hint="upgrade selfaug to open this store")
        con.execute("SET preserve_insertion_order = false")  # every read that needs an order says ORDER BY
    except Exception as exc:
        if con is not None:
            _quietly(con.close)
        reraise_as_fault(exc, resolved)
        raise
    return Store(con, resolved, read_only)


def _migrate_for_reading(path: Path, wait: float) -> None:
    """Migrate an older store before reading it; where it cannot be written (a read-only folder)
    it is read as it is: every reading query works on the tables of older versions."""
    from selfaug_compiler.store.faults import READ_ONLY, StoreFault

    try:
        open_store(path, wait_s=wait).close()
    except StoreFault as exc:
        if exc.kind != READ_ONLY:
            raise

"""Integrity checks (``verify``) and removing unreferenced rows (``gc``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.store.faults import fault
from selfaug_compiler.store.rows import content_hash_sql, row_hash_sql
from selfaug_compiler.store.versions import content_digest_sql, rows_digest, rows_xor_sql, version_id


@dataclass
class VerifyReport:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    hint: str | None = None
    path: str | None = None  # the store file, named in reports of damage

    def fail(self, message: str) -> None:
        self.ok = False
        self.problems.append(message)

    def damaged(self, exc: BaseException, where: str) -> None:
        """Report a store fault (a damaged file) found while reading ``where``."""
        found = fault(exc, self.path)
        if found is None:
            raise exc
        self.fail(f"{where}: {found.problems[0].message}: {found.detail}")
        self.hint = found.problems[0].hint

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "warnings": self.warnings, "stats": self.stats,
                "hint": self.hint}


def verify(con, path=None) -> VerifyReport:
    """Every table reads back in full (DuckDB checks each block's checksum), every version's rows
    exist, row counts match, content ids and row hashes recompute, no orphan membership; staged
    leftovers and unreferenced rows are reported as warnings. A damaged file is reported, not raised."""
    report = VerifyReport(path=None if path is None else str(path))
    if not _check_readable(con, report):
        return report
    try:
        report.stats = dict(zip(("datasets", "versions", "rows", "memberships"), con.execute(
            "SELECT (SELECT count(*) FROM datasets), (SELECT count(*) FROM versions), (SELECT count(*) FROM rows), "
            "(SELECT count(*) FROM version_rows)").fetchall()[0]))
        _check_membership(con, report)
        _check_versions(con, report)
        _check_rows(con, report)
        _check_leftovers(con, report)
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a damaged store
        report.damaged(exc, "checking versions")
    return report


def _check_readable(con, report: VerifyReport) -> bool:
    """Read every column of every table (a damaged block fails its checksum here)."""
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_type = 'BASE TABLE' "
        "ORDER BY table_name").fetchall()]
    for table in tables:
        try:
            con.execute(f'SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM "{table}"').fetchall()
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is a damaged store
            report.damaged(exc, f"table {table}")
    return report.ok


def _check_membership(con, report: VerifyReport) -> None:
    missing = con.execute("SELECT count(*) FROM version_rows vr ANTI JOIN rows r USING (row_hash)").fetchall()[0][0]
    if missing:
        report.fail(f"{missing} version memberships point at rows that do not exist")
    orphans = con.execute("SELECT count(*) FROM version_rows vr ANTI JOIN versions v USING (vid)").fetchall()[0][0]
    if orphans:
        report.fail(f"{orphans} memberships belong to no version (orphan membership)")
    dup_rows = con.execute("SELECT count(*) FROM (SELECT row_hash FROM rows GROUP BY row_hash HAVING count(*) > 1)").fetchall()[0][0]
    if dup_rows:
        report.fail(f"{dup_rows} row hashes are stored more than once")


def _check_versions(con, report: VerifyReport) -> None:
    rows = con.execute(
        "SELECT v.dataset, v.seq, v.id, v.parent, v.step_id, v.n_rows, v.rows_digest, count(r.key), "
        f"{content_digest_sql('r')}, {rows_xor_sql('r')}, count(DISTINCT r.key) "
        "FROM versions v LEFT JOIN version_rows vr ON vr.vid = v.vid LEFT JOIN rows r ON r.row_hash = vr.row_hash "
        "GROUP BY ALL ORDER BY v.dataset, v.seq").fetchall()
    ids = {(r[0], r[2]) for r in rows}
    for dataset, seq, vid_id, parent, step_id, n_rows, stored_digest, n, content, xor, n_keys in rows:
        name = f"{dataset}@{seq}"
        if n != n_rows:
            report.fail(f"{name}: {n} rows found, {n_rows} recorded")
        if n_keys != n:
            report.fail(f"{name}: duplicate keys ({n - n_keys})")
        if version_id(content, parent, step_id) != vid_id:
            report.fail(f"{name}: content id does not recompute from its rows")
        if rows_digest(content, int(xor), n) != stored_digest:
            report.fail(f"{name}: rows digest does not recompute")
        if parent is not None and (dataset, parent) not in ids:
            report.warnings.append(f"{name}: parent {parent[:12]} is not a version of {dataset}")


def _check_rows(con, report: VerifyReport) -> None:
    bad = con.execute(
        f"SELECT count(*) FILTER (WHERE content_hash <> {content_hash_sql()}), "
        f"count(*) FILTER (WHERE row_hash <> {row_hash_sql()}) FROM rows").fetchall()[0]
    if bad[0]:
        report.fail(f"{bad[0]} rows whose content hash does not recompute")
    if bad[1]:
        report.fail(f"{bad[1]} rows whose row hash does not recompute")


def _check_leftovers(con, report: VerifyReport) -> None:
    for stage_id, n in con.execute("SELECT stage_id, count(*) FROM staged GROUP BY stage_id ORDER BY stage_id").fetchall():
        report.warnings.append(f"staged leftovers: {n} rows staged by step {stage_id} (resume the step or commit it)")
    unref = con.execute("SELECT count(*) FROM rows ANTI JOIN version_rows USING (row_hash)").fetchall()[0][0]
    if unref:
        report.warnings.append(f"{unref} rows are referenced by no version (`selfaug data gc` removes them)")
    report.stats["staged"] = con.execute("SELECT count(*) FROM staged").fetchall()[0][0]
    report.stats["unreferenced_rows"] = unref


def gc(store) -> int:
    """Delete rows no version references; returns how many were removed."""
    con = store.con
    with store.transaction():
        n = con.execute("SELECT count(*) FROM rows ANTI JOIN version_rows USING (row_hash)").fetchall()[0][0]
        if n:
            con.execute("DELETE FROM rows WHERE row_hash NOT IN (SELECT row_hash FROM version_rows)")
    if n:
        con.execute("CHECKPOINT")
    return int(n)


def verify_path(path) -> VerifyReport:
    """``selfaug data verify``: verify the store at ``path`` (read-only). A file too damaged to
    open is reported, not raised; runs left ``running`` by a process that is gone (``kill -9``)
    are recorded as ``dead`` when the store can be written, and listed either way."""
    from selfaug_compiler.store.core import open_store
    from selfaug_compiler.store.faults import DAMAGED, NEWER_FORMAT, StoreFault

    try:
        with open_store(path, read_only=True) as store:
            report = store.verify()
            gone = store.dead_runs() if report.ok else []
    except StoreFault as exc:
        if exc.kind not in (DAMAGED, NEWER_FORMAT):
            raise
        report = VerifyReport(path=exc.path)
        report.damaged(exc, "opening the store")
        return report
    if gone:
        try:
            with open_store(path) as store:
                gone = store.mark_dead_runs()
            state = "now recorded as dead"
        except SelfaugError:  # a read-only folder, another writer: say so, change nothing
            state = "still recorded as running (the store cannot be written)"
        for run_id in gone:
            report.warnings.append(f"run {run_id} was left running by a process that is gone; {state}")
    if report.ok:
        report.stats["dead_runs"] = len(gone)
    return report

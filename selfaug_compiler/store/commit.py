"""The write path of ``Store.commit``: hash the incoming rows once, check them, write new rows.

Cost model (1M rows): hashing (sha256 content hash + md5 row hash) and writing the ``rows``
table dominate; everything else is kept to a single pass over narrow data:

* ``prepare`` registers the Arrow input (plus a ``_idx`` position column) and materializes only
  ``(_idx, key, content_hash, row_hash)`` in a temp table; the full columns are never copied.
* ``same_rows`` recognizes an unchanged re-commit by a semi-join of the row hashes against the
  latest version's membership, before any digest is computed.
* ``content_digest`` streams the framed rows, sorted by key in DuckDB, through hashlib; this
  equals ``versions.content_digest_sql`` without building one huge string in SQL.
* ``write_version`` inserts only rows the store lacks (anti-join on the row hash), joining back
  to the Arrow input on ``_idx`` for their columns, then the membership.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pyarrow as pa

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.store.rows import (
    ROW_COLUMNS,
    content_hash_sql,
    default_key_sql,
    row_hash_sql,
    validate_sources,
)
from selfaug_compiler.store.versions import Version, rows_digest, rows_xor_sql

_COLS = ", ".join(ROW_COLUMNS)
_DIGEST_BATCH = 262_144


def _input_name(tmp: str) -> str:
    return f"{tmp}_in"


def prepare(con, table: pa.Table, tmp: str, stage_id: str | None = None) -> None:
    """Make ``{tmp}_in`` (the full incoming rows with ``_idx``) and temp table ``tmp``
    (``_idx, key, content_hash, row_hash``, keys filled with the prompt hash where null)."""
    source = _input_name(tmp)
    if stage_id is None:
        con.register(source, _with_position(table))
    else:  # staged rows join the given ones; the union is small next to a bulk import
        con.register(f"{tmp}_arrow", table)
        con.execute(
            f"CREATE TEMP TABLE {source} AS SELECT row_number() OVER () AS _idx, * FROM (SELECT DISTINCT * FROM "
            f"(SELECT {_COLS} FROM {tmp}_arrow UNION ALL SELECT {_COLS} FROM staged WHERE stage_id = ?))",
            [stage_id])
        con.unregister(f"{tmp}_arrow")
    keyed = f"SELECT * REPLACE ({default_key_sql()} AS key) FROM {source}"
    hashed = f"SELECT *, {content_hash_sql()} AS content_hash FROM ({keyed})"
    con.execute(f"CREATE TEMP TABLE {tmp} AS SELECT _idx, key, content_hash, {row_hash_sql()} AS row_hash "
                f"FROM ({hashed})")


def _with_position(table: pa.Table) -> pa.Table:
    import numpy as np

    return table.append_column("_idx", pa.array(np.arange(table.num_rows, dtype=np.int64)))


def release(con, tmp: str) -> None:
    """Drop what ``prepare`` made (safe to call after a failure at any point)."""
    con.unregister(_input_name(tmp))  # a registered view (no-op when it is not one)
    con.unregister(f"{tmp}_arrow")
    con.execute(f"DROP TABLE IF EXISTS {_input_name(tmp)}")  # the temp table of the staged path
    con.execute(f"DROP TABLE IF EXISTS {tmp}")


def check_keys(con, tmp: str, dataset: str) -> None:
    validate_sources(con, _input_name(tmp))
    dups = con.execute(f"SELECT key, count(*) FROM {tmp} GROUP BY key HAVING count(*) > 1 ORDER BY key LIMIT 3").fetchall()
    if dups:
        key, n = dups[0]
        raise SelfaugError(f"duplicate key {key!r} ({n} rows) in the rows for dataset {dataset!r}",
                           field="key", found=", ".join(repr(d[0]) for d in dups),
                           hint="declare a unique id column (--key FIELD) or remove the duplicates")


def row_count(con, tmp: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {tmp}").fetchall()[0][0])


def same_rows(con, tmp: str, version: Version) -> bool:
    """Whether the incoming rows are exactly ``version``'s rows, metadata included.

    Keys are unique (``check_keys`` ran), so the row hashes are distinct: equal counts and every
    incoming row hash in the version's membership means the same set of rows."""
    n = row_count(con, tmp)
    if n != version.n_rows:
        return False
    found = con.execute(f"SELECT count(*) FROM {tmp} SEMI JOIN (SELECT row_hash FROM version_rows WHERE vid = ?) "
                        "vr USING (row_hash)", [version.vid]).fetchall()[0][0]
    return found == n


def content_digest(con, relation: str) -> str:
    """sha256 over the rows of ``relation`` sorted by key, each ``len(key):key`` + content hash
    (the value of ``versions.content_digest_sql``), hashed as DuckDB streams the sorted rows."""
    digest = hashlib.sha256()
    # con.sql(...).to_arrow_reader streams in ORDER BY order; a DB-API result's reader does not
    # keep the order when preserve_insertion_order is off (as the store sets it).
    reader = con.sql(f"SELECT length(key)::VARCHAR || ':' || key || content_hash AS f FROM {relation} "
                     "ORDER BY key").to_arrow_reader(_DIGEST_BATCH)
    for batch in reader:
        _update_with_strings(digest, batch.column(0))
    return digest.hexdigest()


def _update_with_strings(digest, array: pa.Array) -> None:
    """Feed the concatenated bytes of a string array (no nulls) to ``digest``, zero-copy."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.large_string())
    if len(array) == 0:
        return
    import numpy as np

    width = np.int64 if pa.types.is_large_string(array.type) else np.int32
    _, offsets_buf, data = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=width, count=len(array) + 1, offset=array.offset * np.dtype(width).itemsize)
    digest.update(memoryview(data)[int(offsets[0]):int(offsets[-1])])


def digests(con, tmp: str) -> tuple[int, str, str]:
    """(row count, content digest over sorted keys + content hashes, full rows digest)."""
    n, xor = con.execute(f"SELECT count(*), {rows_xor_sql()} FROM {tmp}").fetchall()[0]
    content = content_digest(con, tmp)
    return n, content, rows_digest(content, int(xor), n)


def write_version(con, tmp: str, *, dataset: str, vid_id: str, parent: str | None, step_id: str | None,
                  recipe_hash: str | None, message: str | None, n_rows: int, rows_digest: str,
                  stage_id: str | None) -> None:
    """Insert new rows, membership and the version record; caller holds the transaction."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    con.execute("INSERT INTO datasets SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM datasets WHERE name = ?)",
                [dataset, now, dataset])
    vid = con.execute("SELECT coalesce(max(vid), 0) + 1 FROM versions").fetchall()[0][0]
    seq = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM versions WHERE dataset = ?", [dataset]).fetchall()[0][0]
    others = [c for c in ROW_COLUMNS if c != "key"]
    con.execute(
        f"INSERT INTO rows (row_hash, content_hash, key, {', '.join(others)}) "
        f"SELECT n.row_hash, n.content_hash, n.key, {', '.join('i.' + c for c in others)} "
        f"FROM (SELECT * FROM {tmp} ANTI JOIN rows USING (row_hash)) n JOIN {_input_name(tmp)} i USING (_idx)")
    con.execute(f"INSERT INTO version_rows SELECT {int(vid)}, row_hash FROM {tmp}")
    if stage_id is not None:
        con.execute("DELETE FROM staged WHERE stage_id = ?", [stage_id])
    con.execute("INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [vid, dataset, seq, vid_id, parent, step_id, recipe_hash, message, now, n_rows, rows_digest])

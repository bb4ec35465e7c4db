"""The row schema of every dataset version, and normalizing input into it.

A row is: ``key`` (from a declared id column or sha256 of the prompt, never a position), the
training payload (``prompt``, ``response``, ``messages`` as JSON text), its target ``source``,
provenance (model, template, sampling, seed, judge, token counts, step id) and ``meta`` (JSON
text: the source's other fields, gold answers, exclusion reasons).

``content_hash`` (sha256 hex over the payload only) and ``row_hash`` (128-bit md5 number over the
content hash, key, provenance and meta) are computed by the store in SQL (``content_hash_sql``,
``row_hash_sql``) so a million rows hash in C, not in Python loops.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import pyarrow as pa

from selfaug_compiler.errors import SelfaugError

SOURCES = ("gold", "self", "paraphrase", "rewrite", "self_dialogue", "replay")
PAYLOAD_COLUMNS = ("prompt", "response", "messages")
JSON_COLUMNS = ("messages", "sampling", "meta")

ROW_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("messages", pa.string()),
        ("source", pa.string()),
        ("model_ref", pa.string()),
        ("model_fingerprint", pa.string()),
        ("template_hash", pa.string()),
        ("sampling", pa.string()),
        ("seed", pa.int64()),
        ("judge_name", pa.string()),
        ("judge_verdict", pa.string()),
        ("judge_score", pa.float64()),
        ("judge_raw", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("response_tokens", pa.int64()),
        ("step_id", pa.string()),
        ("meta", pa.string()),
    ]
)
ROW_COLUMNS = tuple(ROW_SCHEMA.names)
# Everything but the key and payload: a change here with the same payload is "metadata drift".
METADATA_COLUMNS = tuple(c for c in ROW_COLUMNS if c not in ("key",) + PAYLOAD_COLUMNS)

SQL_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE"}
ROW_COLUMNS_DDL = ", ".join(f"{f.name} {SQL_TYPES[f.type]}" for f in ROW_SCHEMA)


def _framed(columns: Iterable[str], alias: str = "") -> str:
    """An unambiguous text encoding of columns: a JSON array (NULL stays null, text is quoted)."""
    p = f"{alias}." if alias else ""
    return f"CAST(json_array({', '.join(p + c for c in columns)}) AS VARCHAR)"


def content_hash_sql(alias: str = "") -> str:
    """SQL for sha256 over the canonical training payload (prompt, response, messages)."""
    return f"sha256({_framed(PAYLOAD_COLUMNS, alias)})"


def row_hash_sql(alias: str = "") -> str:
    """SQL for the row hash (UHUGEINT): md5 over the content hash, key, provenance and meta.

    Needs the ``content_hash`` column; 128 bits keep accidental collisions out of reach."""
    p = f"{alias}." if alias else ""
    return f"md5_number({p}content_hash || '|' || {_framed(('key',) + METADATA_COLUMNS, alias)})"


def default_key_sql(alias: str = "") -> str:
    """SQL for a key when none was declared: sha256 of the prompt (messages when no prompt)."""
    p = f"{alias}." if alias else ""
    return f"coalesce({p}key, sha256(coalesce({p}prompt, {p}messages, '')))"


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _dicts_to_table(rows: Iterable[dict]) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in ROW_COLUMNS}
    for i, row in enumerate(rows):
        unknown = set(row) - set(ROW_COLUMNS)
        if unknown:
            raise SelfaugError(
                f"row {i} has columns that are not row columns: {sorted(unknown)}",
                expected=", ".join(ROW_COLUMNS),
                hint="put the source's other fields into `meta`",
            )
        for name in ROW_COLUMNS:
            value = row.get(name)
            cols[name].append(_json_text(value) if name in JSON_COLUMNS else value)
    return pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in ROW_SCHEMA})


def _cast_table(table: pa.Table) -> pa.Table:
    unknown = [c for c in table.column_names if c not in ROW_COLUMNS]
    if unknown:
        raise SelfaugError(
            f"table has columns that are not row columns: {unknown}",
            expected=", ".join(ROW_COLUMNS),
            hint="put the source's other fields into `meta`",
        )
    arrays = []
    for f in ROW_SCHEMA:
        if f.name in table.column_names:
            col = table[f.name]
            if col.type != f.type:
                col = _cast_column(col, f)
            arrays.append(col)
        else:
            arrays.append(pa.nulls(table.num_rows, type=f.type))
    return pa.Table.from_arrays(arrays, schema=ROW_SCHEMA)


def _cast_column(col: pa.ChunkedArray, f: pa.Field) -> pa.ChunkedArray:
    if f.name in JSON_COLUMNS and not pa.types.is_string(col.type) and not pa.types.is_null(col.type):
        return pa.array([_json_text(v) for v in col.to_pylist()], type=f.type)
    try:
        return col.cast(f.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SelfaugError(f"column {f.name!r} cannot be read as {f.type}", found=str(col.type)) from exc


def normalize_rows(rows: pa.Table | Iterable[dict], key_field: str | None = None) -> pa.Table:
    """Rows (an Arrow table or dicts) as a table in ``ROW_SCHEMA``.

    Missing columns are filled with null, ``source`` defaults to ``gold``. With ``key_field`` the
    key is that column of the input (as text); the column itself is dropped unless it is a row
    column. Keys left null are filled by the store with sha256 of the prompt.
    """
    if isinstance(rows, pa.Table) and key_field in (None, "key") and rows.schema.equals(ROW_SCHEMA):
        if rows["source"].null_count == 0:
            return rows  # already normalized (e.g. by data.sources.load_rows)
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if not isinstance(rows, pa.Table):
        if key_field:
            rows = [_move_key(r, key_field, i) for i, r in enumerate(rows)]
        table = _dicts_to_table(rows)
    else:
        if key_field and key_field != "key":
            table = _key_from_column(rows, key_field)
        else:
            table = rows
        table = _cast_table(table)
    source = table["source"]
    if source.null_count:
        import pyarrow.compute as pc

        table = table.set_column(
            ROW_COLUMNS.index("source"), "source", pc.fill_null(source, "gold")
        )
    return table


def _move_key(row: dict, key_field: str, index: int) -> dict:
    if key_field not in row or row[key_field] is None:
        raise SelfaugError(f"row {index} has no key field {key_field!r}", field=key_field,
                           found=", ".join(sorted(row)))
    out = dict(row)
    value = out.pop(key_field) if key_field not in ROW_COLUMNS else out[key_field]
    out["key"] = str(value)
    return out


def _key_from_column(table: pa.Table, key_field: str) -> pa.Table:
    if key_field not in table.column_names:
        raise SelfaugError(f"key column {key_field!r} is not in the rows", field=key_field,
                           found=", ".join(table.column_names))
    key = table[key_field].cast(pa.string())
    if key.null_count:
        import pyarrow.compute as pc

        first = pc.index(pc.is_null(key), True).as_py()
        raise SelfaugError(f"row {first} has no value in the key column {key_field!r}", field=key_field,
                           hint="every row needs a key; or give no key field to key rows by a hash of the prompt")
    if key_field not in ROW_COLUMNS:
        table = table.drop_columns([key_field])
    if "key" in table.column_names:
        table = table.drop_columns(["key"])
    return table.append_column("key", key)


def validate_sources(con, table_name: str) -> None:
    """Raise if any row's source is not one of ``SOURCES`` (checked in SQL)."""
    allowed = ", ".join(f"'{s}'" for s in SOURCES)
    bad = con.execute(
        f"SELECT DISTINCT source FROM {table_name} WHERE source NOT IN ({allowed}) LIMIT 5"
    ).fetchall()
    if bad:
        raise SelfaugError(
            f"unknown row source {bad[0][0]!r}", field="source", expected=" | ".join(SOURCES),
            found=", ".join(repr(b[0]) for b in bad),
        )

"""Reading task data into rows (an Arrow table in the store's row schema).

Sources: ``.jsonl`` / ``.jsonl.gz`` / ``.ndjson``, ``.json`` (array or lines), ``.csv``,
``.parquet``, a folder written by ``datasets.Dataset.save_to_disk``, and ``packaged:NAME``.
Files are parsed and mapped by DuckDB in one SQL query (no per-row Python), in an in-memory
connection, so the store is locked only for the commit itself.

Mapping: ``{"prompt": COL, "response": COL, "messages": COL}`` (defaults: the first present of
prompt/question/instruction/input, response/answer/output/completion, messages). Provenance
columns with row-column names pass through; every other source column goes into ``meta`` (JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from selfaug_compiler.data.packaged import load_packaged
from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.store.rows import SQL_TYPES, METADATA_COLUMNS, PAYLOAD_COLUMNS, ROW_SCHEMA

DEFAULT_CANDIDATES = {
    "prompt": ("prompt", "question", "instruction", "input", "query"),
    "response": ("response", "answer", "output", "completion", "target"),
    "messages": ("messages",),
}
_IGNORED = {"content_hash", "row_hash"}
_PASS_THROUGH = [c for c in METADATA_COLUMNS if c != "meta"]


@dataclass
class SourceSpec:
    """What to read: a path or ``packaged:NAME``, with an optional split for HF folders."""

    location: str
    split: str | None = None

    @property
    def packaged(self) -> str | None:
        return self.location.split(":", 1)[1] if self.location.startswith("packaged:") else None


def parse_mapping(text: str | None) -> dict[str, str]:
    """``prompt=question,response=answer`` -> dict; targets must be payload columns."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        target, sep, column = part.partition("=")
        if not sep or not column.strip():
            raise SelfaugError(f"bad mapping {part!r}", field="--map", expected="TARGET=COLUMN, e.g. prompt=question")
        if target.strip() not in PAYLOAD_COLUMNS:
            raise SelfaugError(f"unknown mapping target {target.strip()!r}", field="--map",
                               expected=", ".join(PAYLOAD_COLUMNS), found=target.strip())
        mapping[target.strip()] = column.strip()
    return mapping


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _file_relation(con, path: Path, split: str | None) -> None:
    """Define view ``src`` over the file (DuckDB readers, or Arrow for HF folders)."""
    p = str(path).replace("'", "''")
    name = path.name.lower()
    if path.is_dir():
        con.register("src", _hf_table(path, split))
    elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        con.execute(f"CREATE VIEW src AS SELECT * FROM read_json('{p}', format='newline_delimited')")
    elif name.endswith((".json", ".json.gz")):
        con.execute(f"CREATE VIEW src AS SELECT * FROM read_json('{p}', format='auto')")
    elif name.endswith((".csv", ".csv.gz", ".tsv")):
        con.execute(f"CREATE VIEW src AS SELECT * FROM read_csv('{p}', header=true)")
    elif name.endswith(".parquet"):
        con.execute(f"CREATE VIEW src AS SELECT * FROM read_parquet('{p}')")
    else:
        raise SelfaugError(f"cannot tell the format of {path}", file=str(path),
                           expected=".jsonl, .json, .csv, .parquet or a folder saved with save_to_disk")


def _hf_table(path: Path, split: str | None) -> pa.Table:
    import datasets  # heavy: only for HF folders

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # not a saved dataset
        raise SelfaugError(f"{path} is not a dataset saved with save_to_disk: {exc}", file=str(path)) from exc
    if isinstance(ds, datasets.DatasetDict):
        chosen = split or ("train" if "train" in ds else next(iter(ds)))
        if chosen not in ds:
            raise SelfaugError(f"split {chosen!r} is not in {path}", file=str(path), expected=", ".join(ds))
        ds = ds[chosen]
    return ds.data.table


def _first_bad_line(path: Path) -> tuple[int, str] | None:
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as exc:
                    return number, exc.msg
    return None


def _columns(con) -> list[str]:
    return [r[0] for r in con.execute("DESCRIBE src").fetchall()]


def _pick(mapping: dict[str, str], columns: list[str], where: str) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for target in PAYLOAD_COLUMNS:
        if target in mapping:
            if mapping[target] not in columns:
                raise SelfaugError(f"column {mapping[target]!r} (mapped to {target}) is not in {where}",
                                   file=where, field=target, expected=", ".join(columns), found=mapping[target],
                                   hint="fix --map (TARGET=COLUMN) to name one of the available columns")
            chosen[target] = mapping[target]
        else:
            found = next((c for c in DEFAULT_CANDIDATES[target] if c in columns), None)
            if found:
                chosen[target] = found
    if "prompt" not in chosen and "messages" not in chosen:
        raise SelfaugError(f"no prompt column in {where}", file=where, field="prompt",
                           expected="a column named prompt/question/instruction/input, or --map prompt=COLUMN",
                           found=", ".join(columns))
    return chosen


def _as_text(expr: str, typ: str) -> str:
    return f"CAST({expr} AS VARCHAR)" if typ.upper() == "VARCHAR" else f"to_json({expr})::VARCHAR"


def _mapping_sql(con, mapping: dict[str, str], key_field: str | None, where: str) -> str:
    described = {r[0]: r[1] for r in con.execute("DESCRIBE src").fetchall()}
    columns = list(described)
    chosen = _pick(mapping, columns, where)
    if key_field is None and "key" in columns:
        key_field = "key"
    if key_field is not None and key_field not in columns:
        raise SelfaugError(f"key column {key_field!r} is not in {where}", file=where, field="--key",
                           expected=", ".join(columns), found=key_field)
    select = [f"CAST({_q(key_field)} AS VARCHAR) AS key" if key_field else "NULL::VARCHAR AS key"]
    for target in PAYLOAD_COLUMNS:
        col = chosen.get(target)
        select.append(f"{_as_text(_q(col), described[col])} AS {target}" if col else f"NULL::VARCHAR AS {target}")
    used = set(chosen.values()) | {key_field} | _IGNORED
    passed = [c for c in _PASS_THROUGH if c in columns and c not in used]
    used |= set(passed)
    rest = [c for c in columns if c not in used and c != "meta"]
    for col in _PASS_THROUGH:
        sql_type = SQL_TYPES[ROW_SCHEMA.field(col).type]
        value = f"CAST({_q(col)} AS {sql_type})" if col in passed else f"NULL::{sql_type}"
        select.append(f"{'coalesce(' + value + ', ' + repr('gold') + ')' if col == 'source' else value} AS {col}")
    meta = f"to_json(struct_pack({', '.join(f'{_q(c)} := {_q(c)}' for c in rest)}))" if rest else None
    if "meta" in columns and "meta" not in used:
        own = f"CAST(meta AS JSON)"
        meta = f"json_merge_patch({own}, {meta})" if meta else own
    select.append(f"CAST({meta} AS VARCHAR) AS meta" if meta else "NULL::VARCHAR AS meta")
    return f"SELECT {', '.join(select)} FROM src"


def load_rows(spec: SourceSpec | str, mapping: dict[str, str] | None = None,
              key_field: str | None = None) -> pa.Table:
    """Read a source and map it into row columns (an Arrow table ready for ``store.commit``).

    Packaged sets default to their ``id`` column as key (hash of the prompt where it is null).
    """
    import duckdb

    spec = SourceSpec(spec) if isinstance(spec, str) else spec
    con = duckdb.connect()
    try:
        if spec.packaged is not None:
            con.register("src", load_packaged(spec.packaged))
            where = spec.location
            if key_field is None:
                key_field = "id"
        else:
            path = Path(spec.location).expanduser()
            if not path.exists():
                raise SelfaugError(f"file not found: {path}", file=str(path), hint="check the path")
            where = str(path)
        try:
            if spec.packaged is None:
                _file_relation(con, Path(where), spec.split)
            sql = _mapping_sql(con, mapping or {}, key_field, where)
            table = con.sql(sql).to_arrow_table().cast(ROW_SCHEMA)
        except duckdb.Error as exc:
            raise _read_error(spec, exc) from exc
        return _check_keys_present(table, key_field, where)
    finally:
        con.close()


def _read_error(spec: SourceSpec, exc: Exception) -> SelfaugError:
    path = Path(spec.location)
    if path.is_file() and (".json" in path.name or path.name.endswith(".ndjson")):
        bad = _first_bad_line(path)
        if bad:
            return SelfaugError(f"malformed JSON line: {bad[1]}", file=str(path), line=bad[0],
                                hint="fix or remove that line")
    return SelfaugError(f"cannot read {spec.location}: {str(exc).splitlines()[0]}", file=spec.location)


def _check_keys_present(table: pa.Table, key_field: str | None, where: str) -> pa.Table:
    if key_field and key_field != "id" and table["key"].null_count:
        import pyarrow.compute as pc

        first = pc.index(pc.is_null(table["key"]), True).as_py()
        raise SelfaugError(f"row {first + 1} has no value in key column {key_field!r}", file=where,
                           field="--key", hint="every row needs a key; or omit --key to key rows by prompt hash")
    return table

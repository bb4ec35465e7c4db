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
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from selfaug_compiler.data import shapes, text
from selfaug_compiler.data.shapes import ShapeError
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
    """What to read: a path or ``packaged:NAME``, with an optional split for HF folders and the
    text encoding of jsonl/json/csv files (``encoding_option`` names where the user sets it)."""

    location: str
    split: str | None = None
    encoding: str = "utf-8"
    encoding_option: str = "--encoding"
    format: str = "auto"  # data/shapes.py: auto or a named input shape
    format_option: str = "--shape"
    hub_config: str | None = None  # hf:ORG/NAME (a hub dataset id): its config and revision
    revision: str | None = None

    @property
    def packaged(self) -> str | None:
        return self.location.split(":", 1)[1] if self.location.startswith("packaged:") else None

    @property
    def hub(self) -> str | None:
        return self.location.split(":", 1)[1] if self.location.startswith("hf:") else None


def check_encoding(encoding: str, option: str) -> str:
    """``encoding`` when Python knows the codec, else a ``SelfaugError`` naming ``option``."""
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise SelfaugError(f"unknown text encoding {encoding[:40]!r}", field=option,
                           expected="a Python codec name, e.g. utf-8, latin-1, cp1252, utf-16") from None
    return encoding


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
    elif name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):  # a fixed delimiter: a ragged row is an error
        delim = "\\t" if ".tsv" in name else ","
        con.execute(f"CREATE VIEW src AS SELECT * FROM read_csv('{p}', header=true, delim=E'{delim}')")
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


def _first_bad_json(path: Path) -> tuple[int, str] | None:
    """Where a .json file (one document, or JSON lines) stops parsing."""
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        try:
            json.load(f)
        except json.JSONDecodeError as exc:
            return _first_bad_line(path) if exc.msg == "Extra data" else (exc.lineno, exc.msg)
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


def _payload_sql(described: dict[str, str], spec: SourceSpec, mapping: dict[str, str],
                 where: str) -> tuple[str, dict[str, str], set[str]]:
    """(the shape read, SQL per payload column, source columns used) for the source's shape."""
    columns = list(described)
    fmt = "messages" if spec.format in (None, "auto") and "messages" in mapping else spec.format
    shape = shapes.resolve(fmt, columns)
    if shape == "prompt_response":
        chosen = _pick(mapping, columns, where)
        return shape, {t: _as_text(_q(c), described[c]) for t, c in chosen.items()}, set(chosen.values())
    if shape == "messages" and "messages" in mapping:
        col = _pick({"messages": mapping["messages"]}, columns, where)["messages"]
        return shape, {"messages": _as_text(_q(col), described[col])}, {col}
    missing = shapes.missing_columns(shape, columns)
    if missing:
        raise SelfaugError(f"{where} has no column {', '.join(repr(c) for c in missing)} for the {shape} shape",
                           file=where, field=spec.format_option, expected=", ".join(shapes.SHAPE_COLUMNS[shape]),
                           found=", ".join(columns),
                           hint=f"set {spec.format_option} to the shape of the data (one of: "
                                f"{', '.join(shapes.FORMATS)}), or rename the columns")
    if shape == "alpaca":
        instruction = f"CAST({_q('instruction')} AS VARCHAR)"
        if "input" not in described:
            return shape, {"prompt": instruction, "response": _as_text(_q("output"), described["output"])}, \
                {"instruction", "output"}
        text = f"CAST({_q('input')} AS VARCHAR)"
        prompt = (f"CASE WHEN {text} IS NULL OR trim({text}) = '' THEN {instruction} "
                  f"ELSE {instruction} || chr(10) || chr(10) || {text} END")
        return shape, {"prompt": prompt, "response": _as_text(_q("output"), described["output"])}, \
            {"instruction", "input", "output"}
    if shape == "prompt_completion":
        if described["prompt"].upper() == "VARCHAR" and described["completion"].upper() == "VARCHAR":
            return shape, {"prompt": _q("prompt"), "response": _q("completion")}, {"prompt", "completion"}
        both = f"json_object('prompt', to_json({_q('prompt')}), 'completion', to_json({_q('completion')}))"
        return shape, {"messages": f"CAST({both} AS VARCHAR)"}, {"prompt", "completion"}
    col = shapes.SHAPE_COLUMNS[shape][0]
    return shape, {"messages": _as_text(_q(col), described[col])}, {col}


def _mapping_sql(con, spec: SourceSpec, mapping: dict[str, str], key_field: str | None,
                 where: str) -> tuple[str, str | None, str]:
    """(the mapping query, the key column used, the shape read)."""
    described = {r[0]: r[1] for r in con.execute("DESCRIBE src").fetchall()}
    columns = list(described)
    try:
        shape, payload, chosen = _payload_sql(described, spec, mapping, where)
    except SelfaugError:
        _refuse_no_rows(con, where)
        raise
    if key_field is None and "key" in columns:
        key_field = "key"
    if key_field is not None and key_field not in columns:
        raise SelfaugError(f"key column {key_field!r} is not in {where}", file=where, field="--key",
                           expected=", ".join(columns), found=key_field)
    select = [f"CAST({_q(key_field)} AS VARCHAR) AS key" if key_field else "NULL::VARCHAR AS key"]
    for target in PAYLOAD_COLUMNS:
        select.append(f"{payload[target]} AS {target}" if target in payload else f"NULL::VARCHAR AS {target}")
    used = set(chosen) | {key_field} | _IGNORED
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
    return f"SELECT {', '.join(select)} FROM src", key_field, shape


def _refuse_no_rows(con, where: str) -> None:
    if con.execute("SELECT count(*) FROM src").fetchall()[0][0] == 0:
        raise SelfaugError(f"{where} has no rows", file=where,
                           hint="give a file with at least one record (a csv needs a header and rows)")


def load_rows(spec: SourceSpec | str, mapping: dict[str, str] | None = None,
              key_field: str | None = None) -> pa.Table:
    """Read a source and map it into row columns (an Arrow table ready for ``store.commit``).

    A declared key column (``key_field``, or a ``key`` column in the file) must have a value in
    every row; packaged sets default to their ``id`` column (hash of the prompt where it is null).
    An empty source, a ragged CSV row or text that is not in ``spec.encoding`` is refused with its line.
    """
    import duckdb

    spec = SourceSpec(spec) if isinstance(spec, str) else spec
    declared = key_field is not None
    con = duckdb.connect()
    scratch = tempfile.TemporaryDirectory(prefix="selfaug-read-")
    try:
        if spec.packaged is not None:
            con.register("src", load_packaged(spec.packaged))
            where, read = spec.location, None
            if key_field is None:
                key_field = "id"
        elif spec.hub is not None:
            from selfaug_compiler.data.hub import load_hub_table

            con.register("src", load_hub_table(spec.hub, spec.hub_config, spec.split, spec.revision))
            where, read = spec.location, None
        else:
            path = Path(spec.location).expanduser()
            if not path.exists():
                raise SelfaugError(f"file not found: {path}", file=str(path), hint="check the path")
            where, read = str(path), _readable_copy(path, spec, Path(scratch.name))
        try:
            if read is not None:
                _file_relation(con, read, spec.split)
            sql, used_key, shape = _mapping_sql(con, spec, mapping or {}, key_field, where)
            table = con.sql(sql).to_arrow_table().cast(ROW_SCHEMA)
        except duckdb.Error as exc:
            raise _read_error(spec, exc, read) from exc
        if table.num_rows == 0:
            raise SelfaugError(f"{where} has no rows", file=where,
                               hint="give a file with at least one record (a csv needs a header and rows)")
        if declared or used_key == "key":
            _check_keys_present(table, used_key, where, read)
        if spec.packaged is None:
            _check_targets_present(con, table, mapping or {}, where, read)
        if table["messages"].null_count < table.num_rows:
            table = _canonical_conversations(table, shape, spec, where, read)
        return table
    finally:
        con.close()
        scratch.cleanup()


def _canonical_conversations(table: pa.Table, shape: str, spec: SourceSpec, where: str,
                             read: Path | None) -> pa.Table:
    """The ``messages`` column as canonical conversations (data/shapes.py); a row that is not one
    is refused with its line, the column and the fix."""
    column = "messages" if shape == "prompt_response" else shape
    out = []
    for i, value in enumerate(table["messages"].to_pylist()):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(shapes.canonical(shapes.conversation(value, column)))
        except ShapeError as exc:
            line = text.line_of_row(read, text.text_kind(read) or "", i) if read is not None else None
            at = f"line {line}" if line else f"row {i + 1}"
            field = "conversations" if column == "sharegpt" else "prompt/completion" if column == "prompt_completion" \
                else "messages"
            raise SelfaugError(f"{at}: {exc} (read as {shape})", file=where, line=line, field=field,
                               hint=f"{exc.hint}; or set {spec.format_option} to the data's shape "
                                    f"({', '.join(shapes.FORMATS[1:])})") from None
    return table.set_column(table.schema.get_field_index("messages"), "messages", pa.array(out, pa.string()))


def _readable_copy(path: Path, spec: SourceSpec, scratch: Path) -> Path:
    """The file DuckDB should read: ``path`` itself, or a UTF-8 copy of a text file in another
    encoding (or with a byte order mark). An empty file and a ragged CSV row (which DuckDB's
    dialect sniffer may silently read as another header) are refused here, with the line."""
    kind = text.text_kind(path)
    if path.is_file() and path.stat().st_size == 0 or kind is not None and text.is_blank(path):
        raise SelfaugError(f"{path} is empty", file=str(path),
                           hint=f"give a {kind or 'data'} file with at least one record")
    if kind is None:
        return path
    read = path
    if not text.is_utf8(spec.encoding) or text.has_bom(path):
        read = scratch / path.name.removesuffix(".gz").removesuffix(".GZ")
        try:
            text.transcode(path, spec.encoding, read)
        except UnicodeError as exc:
            raise _encoding_error(spec, path) from exc
    if kind in ("csv", "tsv"):
        try:
            ragged = text.first_ragged_row(read, "," if kind == "csv" else "\t")
        except UnicodeError as exc:
            raise _encoding_error(spec, path) from exc
        if ragged:
            raise SelfaugError(f"line {ragged[0]} has {ragged[1]} fields, the header has {ragged[2]}",
                               file=str(path), line=ragged[0],
                               hint="quote fields that contain the delimiter, or fix that row")
    return read


def _encoding_error(spec: SourceSpec, path: Path) -> SelfaugError:
    found = text.undecodable_message(path, spec.encoding, spec.encoding_option)
    message, line, hint = found or (f"the file is not {spec.encoding} text", None, f"set {spec.encoding_option}")
    return SelfaugError(message, file=str(path), line=line, field=spec.encoding_option, hint=hint)


def _read_error(spec: SourceSpec, exc: Exception, read: Path | None) -> SelfaugError:
    path = Path(spec.location)
    kind = text.text_kind(path) if path.is_file() else None
    if kind is not None and read is not None:
        if read == path and text.first_undecodable(path, spec.encoding) is not None:
            return _encoding_error(spec, path)
        if kind in ("jsonl", "json"):
            bad = _first_bad_line(read) if kind == "jsonl" else _first_bad_json(read)
            if bad:
                return SelfaugError(f"malformed JSON line: {bad[1]}", file=str(path), line=bad[0],
                                    hint="fix or remove that line")
    return SelfaugError(f"cannot read {spec.location}: {str(exc).splitlines()[0]}", file=spec.location)


def _check_keys_present(table: pa.Table, key_field: str, where: str, read: Path | None) -> None:
    """Every row of a declared key column has a non-empty value; else name the first row without."""
    import pyarrow.compute as pc

    keys = table["key"]
    missing = pc.or_kleene(pc.is_null(keys), pc.equal(pc.utf8_trim_whitespace(keys), "")).fill_null(True)
    if not pc.any(missing).as_py():
        return
    first = pc.index(missing, True).as_py()
    line = text.line_of_row(read, text.text_kind(read) or "", first) if read is not None else None
    at = f"line {line}" if line else f"row {first + 1}"
    raise SelfaugError(f"{at} has no value in the key column {key_field!r}", file=where, line=line,
                       field="key", expected=f"a value of {key_field!r} in every row",
                       hint="give every row a key, or drop the key column (--key / fields.id) to key rows by "
                            "a hash of the prompt")


def _check_targets_present(con, table: pa.Table, mapping: dict[str, str], where: str, read: Path | None) -> None:
    """Every row of a file with a response column has a response (or messages): data/targets.py."""
    from selfaug_compiler.data.targets import first_without_target, refuse_missing_target

    first = first_without_target(table["response"].to_pylist(), table["messages"].to_pylist())
    if first is not None:
        column = _pick(mapping, _columns(con), where).get("response", "response")
        raise refuse_missing_target(first, column, where, read)

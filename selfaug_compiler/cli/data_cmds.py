"""`selfaug data …`: import, list, log, show, export, tag, verify, gc and diff dataset versions.

Never imports torch/transformers. Each command opens the store for as short as it can, read-only
when it only reads. Text output is for people (rich tables); ``--format json`` is for scripts.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from selfaug_compiler.cli.store_note import missing_store, other_stores, store_line, store_source
from selfaug_compiler.errors import SelfaugError

data_app = typer.Typer(help="Versioned datasets in the store: import, inspect, diff, export.",
                       no_args_is_help=True)

StoreOpt = Annotated[Optional[str], typer.Option("--store", help="store file (default: $SELFAUG_STORE or .selfaug/store.duckdb)")]
FormatOpt = Annotated[str, typer.Option("--format", help="text | json")]


@data_app.callback()
def _data(ctx: typer.Context, store: StoreOpt = None) -> None:
    ctx.obj = {"store": store}


def _store_path(ctx: typer.Context, store: str | None) -> Path:
    """The store this command uses, absolute: --store > $SELFAUG_STORE > .selfaug/store.duckdb.
    The first call names it on stderr (``store: PATH (from …)``), so piped output stays clean."""
    from selfaug_compiler.store import resolve_store_path

    explicit = store or (ctx.obj or {}).get("store")
    path = resolve_store_path(explicit).resolve()
    if isinstance(ctx.obj, dict) and not ctx.obj.get("store_named"):
        ctx.obj["store_named"] = True
        print(store_line(path, store_source(explicit)), file=sys.stderr)
    return path


@contextmanager
def _open(ctx: typer.Context, store: str | None, *, read_only: bool) -> Iterator[Any]:
    """The open store; a user error raised while it is open names the store (and its neighbours)."""
    from selfaug_compiler.store import open_store

    path = _store_path(ctx, store)
    try:
        with open_store(path, read_only=read_only) as s:
            yield s
    except SelfaugError as exc:
        raise _naming_store(exc, path)


def _naming_store(exc: SelfaugError, path: Path) -> SelfaugError:
    first = exc.problems[0]
    if str(path) not in exc.render():
        first.message += f" (store {path})"
    others = other_stores(path)
    if others and first.message.startswith(("unknown dataset", "no store at")) and "other stores" not in (first.hint or ""):
        first.hint = f"{first.hint}; other stores next to it: {others}" if first.hint else f"other stores: {others}"
    exc.args = (exc.render(),)
    return exc


def _fmt(fmt: str) -> str:
    if fmt not in ("text", "json"):
        raise SelfaugError(f"unknown format {fmt!r}", field="--format", expected="text, json", found=fmt)
    return fmt


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def _console():
    """Rich output; when piped, wide enough that tables never cut a name."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=10_000)


def _table(title: str, columns: list[str], rows: list[list[Any]]):
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, overflow="fold")  # a narrow terminal wraps a long name, never cuts it
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    return table


@data_app.command("import")
def import_(ctx: typer.Context, file: Annotated[str, typer.Argument(help="FILE or packaged:NAME")],
            dataset: Annotated[str, typer.Option("--dataset", help="dataset name")],
            key: Annotated[Optional[str], typer.Option("--key", help="id column (default: sha256 of the prompt)")] = None,
            map_: Annotated[Optional[str], typer.Option("--map", help="prompt=COL,response=COL,messages=COL")] = None,
            message: Annotated[Optional[str], typer.Option("--message", "-m")] = None,
            encoding: Annotated[str, typer.Option("--encoding", help="text encoding of a jsonl/json/csv file, "
                                                  "e.g. latin-1, cp1252, utf-16")] = "utf-8",
            shape: Annotated[str, typer.Option("--shape", help="input shape: auto, prompt_response, "
                                               "prompt_completion, alpaca, messages, sharegpt")] = "auto",
            store: StoreOpt = None, fmt: FormatOpt = "text") -> None:
    """Import a file (jsonl, json, csv, parquet, HF folder) or packaged:NAME as a new version."""
    from selfaug_compiler.data.shapes import FORMATS
    from selfaug_compiler.data.sources import SourceSpec, check_encoding, load_rows, parse_mapping
    from selfaug_compiler.store.versions import check_name

    _fmt(fmt)
    check_name(dataset)
    if shape not in FORMATS:
        raise SelfaugError(f"unknown input shape {shape!r}", field="--shape", expected=", ".join(FORMATS), found=shape)
    mapping = parse_mapping(map_)
    if shape == "auto" and ({"prompt", "response"} & set(mapping)):
        shape = "prompt_response"  # columns mapped by hand: read them as mapped
    spec = SourceSpec(file, encoding=check_encoding(encoding, "--encoding"), format=shape, format_option="--shape")
    rows = load_rows(spec, mapping, key)  # parse before locking the store
    with _open(ctx, store, read_only=False) as s:
        before = s.con.execute("SELECT count(*) FROM versions WHERE dataset = ?", [dataset]).fetchall()[0][0]
        v = s.commit(dataset, rows, message=message or f"import {file}")
        created = s.con.execute("SELECT count(*) FROM versions WHERE dataset = ?", [dataset]).fetchall()[0][0] > before
    if fmt == "json":
        return _print_json(v.to_dict() | {"created": created})
    state = "committed" if created else "unchanged: already"
    print(f"{state} {v.dataset}@{v.seq} ({v.short_id}), {v.n_rows} rows")


@data_app.command("ls")
def ls(ctx: typer.Context, store: StoreOpt = None, fmt: FormatOpt = "text") -> None:
    """List datasets with their latest version."""
    from selfaug_compiler.store import resolve_store_path

    _fmt(fmt)
    explicit = store or (ctx.obj or {}).get("store")
    if fmt == "text" and not resolve_store_path(explicit).exists():  # one message, not a store line and another
        print(missing_store(resolve_store_path(explicit), store_source(explicit)))
        return
    path = _store_path(ctx, store)
    if not path.exists():
        items: list[dict] = []
    else:
        with _open(ctx, store, read_only=True) as s:
            items = s.datasets()
    if fmt == "json":
        return _print_json(items)
    if not items:
        others = other_stores(path)
        print(f"No datasets in {path}" + (f"; other stores next to it: {others}" if others else ""))
        return
    _console().print(_table(f"datasets in {path}", ["name", "versions", "latest", "rows", "updated"],
                            [[d["name"], d["versions"], f"@{d['latest_seq']} {d['latest_id'][:12]}", d["rows"],
                              str(d["updated_at"])[:19]] for d in items]))


@data_app.command("log")
def log(ctx: typer.Context, name: str, store: StoreOpt = None, fmt: FormatOpt = "text") -> None:
    """The versions of one dataset, oldest first."""
    _fmt(fmt)
    with _open(ctx, store, read_only=True) as s:
        versions = s.log(name)
    if fmt == "json":
        return _print_json([v.to_dict() for v in versions])
    _console().print(_table(f"log of {name}", ["seq", "id", "parent", "rows", "step", "tags", "created", "message"],
                            [[f"@{v.seq}", v.short_id, (v.parent or "")[:12], v.n_rows, (v.step_id or "")[:12],
                              ",".join(v.tags), str(v.created_at)[:19], v.message] for v in versions]))


@data_app.command("show")
def show(ctx: typer.Context, ref: str, limit: Annotated[int, typer.Option("--limit", "-n")] = 10,
         store: StoreOpt = None, fmt: FormatOpt = "text") -> None:
    """A version's details and its first rows."""
    _fmt(fmt)
    with _open(ctx, store, read_only=True) as s:
        v = s.resolve(ref)
        rows = s.con.sql(
            "SELECT r.* EXCLUDE (row_hash) FROM version_rows vr JOIN rows r ON r.row_hash = vr.row_hash "
            "WHERE vr.vid = ? ORDER BY r.key LIMIT ?", params=[v.vid, max(0, limit)]).to_arrow_table().to_pylist()
        excluded = s.con.execute(
            "SELECT CASE WHEN json_valid(r.meta) THEN json_extract_string(r.meta, '$.excluded') END AS why, count(*) "
            "FROM version_rows vr "
            "JOIN rows r ON r.row_hash = vr.row_hash WHERE vr.vid = ? AND why IS NOT NULL GROUP BY why ORDER BY why",
            [v.vid]).fetchall()
    if fmt == "json":
        return _print_json({"version": v.to_dict(), "excluded": dict(excluded), "rows": rows})
    print(f"{v.dataset}@{v.seq}  id {v.id}\n  rows {v.n_rows}  parent {v.parent or '-'}  step {v.step_id or '-'}"
          f"  tags {','.join(v.tags) or '-'}  created {str(v.created_at)[:19]}\n  {v.message or ''}")
    if excluded:  # rows kept in the version but never training targets (meta.excluded)
        print("  excluded: " + ", ".join(f"{why} {n}" for why, n in excluded))
    for r in rows:
        r["excluded"] = _meta_field(r.get("meta"), "excluded")
    shown = [c for c in ("key", "source", "prompt", "response", "judge_verdict") if rows and c in rows[0]]
    shown += ["excluded"] if any(r["excluded"] for r in rows) else []
    _console().print(_table(f"first {len(rows)} rows", shown,
                            [[_clip(r.get(c)) for c in shown] for r in rows]))


def _meta_field(meta: Any, name: str) -> Any:
    try:
        value = json.loads(meta) if meta else None
    except ValueError:
        return None
    return value.get(name) if isinstance(value, dict) else None


def _clip(value: Any, width: int = 60) -> str:
    text = "" if value is None else str(value).replace("\n", "⏎ ")
    return text if len(text) <= width else text[: width - 1] + "…"


@data_app.command("export")
def export(ctx: typer.Context, ref: str, output: Annotated[Path, typer.Option("-o", "--output")],
           format_: Annotated[Optional[str], typer.Option("--format", help="rows (default: the stored rows), or "
                              "the conversations the train step sees: messages, trl, sharegpt, alpaca")] = None,
           system_prompt: Annotated[Optional[str], typer.Option("--system-prompt", help="with --format: the system "
                                    "prompt (default: the one of the recorded train step that read this version)")] = None,
           prompt_format: Annotated[Optional[str], typer.Option("--prompt-format", help="with --format trl: "
                                    "completion writes plain prompt text + completion, as a completion-style model "
                                    "trains (default: the recorded train step's model.prompt_format)")] = None,
           store: StoreOpt = None) -> None:
    """Write a version to a parquet or jsonl file (by extension), atomically."""
    from selfaug_compiler.data.export import EXPORT_FORMATS, export_table, prompt_format_for, system_prompt_for

    suffix = output.name.lower()
    if not suffix.endswith((".parquet", ".jsonl")):
        raise SelfaugError(f"cannot export to {output}", field="-o", expected="a .parquet or .jsonl file")
    if format_ not in (None, "rows", *EXPORT_FORMATS):
        raise SelfaugError(f"unknown export format {format_!r}", field="--format",
                           expected="rows, " + ", ".join(EXPORT_FORMATS))
    if prompt_format not in (None, "chat", "completion"):
        raise SelfaugError(f"unknown prompt format {prompt_format!r}", field="--prompt-format",
                           expected="chat or completion")
    with _open(ctx, store, read_only=True) as s:
        v = s.resolve(ref)
        table = s.read(v)
        if format_ not in (None, "rows") and system_prompt is None:
            system_prompt = system_prompt_for(s.con, v.step_id)
        if format_ not in (None, "rows") and prompt_format is None:
            prompt_format = prompt_format_for(s.con, v.step_id)
    if format_ not in (None, "rows"):
        table = export_table(table, format_, system_prompt, prompt_format or "chat")
    _write_atomically(table, output)
    print(f"wrote {v.n_rows} rows of {v.dataset}@{v.seq} ({v.short_id}) to {output}")


def _write_atomically(table, output: Path) -> None:
    if output.is_dir():
        raise SelfaugError(f"cannot export to {output}: it is a folder", field="-o",
                           expected="a .parquet or .jsonl file path", hint=f"e.g. -o {output / 'data.jsonl'}")
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        _write_file(table, output, tmp)
    except OSError as exc:
        raise SelfaugError(f"cannot write {output}: {exc.strerror or exc}", field="-o",
                           hint="export to a folder you can write, with free space") from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _write_file(table, output: Path, tmp: Path) -> None:
    if output.name.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        pq.write_table(table, tmp)  # pyarrow's IO errors are OSErrors
    else:
        import duckdb

        con = duckdb.connect()
        con.register("t", table)
        try:
            con.execute(f"COPY t TO '{str(tmp).replace(chr(39), chr(39) * 2)}' (FORMAT json)")
        except duckdb.IOException as exc:
            raise OSError(str(exc).splitlines()[0]) from exc
        finally:
            con.close()
    os.replace(tmp, output)


@data_app.command("tag")
def tag(ctx: typer.Context, ref: str, tag_name: Annotated[str, typer.Argument(metavar="TAG")],
        store: StoreOpt = None) -> None:
    """Name a version (NAME@TAG then resolves to it)."""
    with _open(ctx, store, read_only=False) as s:
        v = s.tag(ref, tag_name)
    print(f"tagged {v.dataset}@{v.seq} ({v.short_id}) as {tag_name}")


@data_app.command("verify")
def verify(ctx: typer.Context, store: StoreOpt = None, fmt: FormatOpt = "text") -> None:
    """Check the store's integrity (exit 1 when something is wrong)."""
    _fmt(fmt)
    from selfaug_compiler.store.verify import verify_path

    report = verify_path(_store_path(ctx, store))
    if fmt == "json":
        _print_json(report.to_dict())
    else:
        stats = ", ".join(f"{k} {v}" for k, v in report.stats.items())
        print(("ok: " if report.ok else "FAILED: ") + stats)
        for p in report.problems:
            print(f"  error: {p}")
        for w in report.warnings:
            print(f"  warning: {w}")
        if report.hint:
            print(f"  hint: {report.hint}")
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("gc")
def gc(ctx: typer.Context, store: StoreOpt = None, fmt: FormatOpt = "text") -> None:
    """Remove rows that no version references."""
    _fmt(fmt)
    with _open(ctx, store, read_only=False) as s:
        removed = s.gc()
    if fmt == "json":
        return _print_json({"removed_rows": removed})
    print(f"removed {removed} unreferenced rows")


@data_app.command("diff")
def diff(ctx: typer.Context, a: str, b: str,
         cells: Annotated[bool, typer.Option("--cells", help="list changed cells of modified rows")] = False,
         limit: Annotated[int, typer.Option("--limit", help="modified rows shown with --cells")] = 20,
         store: StoreOpt = None, fmt: FormatOpt = "text") -> None:
    """What changed between two versions (A B may be NAME@V; B may be a bare @V of A's dataset)."""
    _fmt(fmt)
    if b.startswith("@"):
        b = a.rpartition("@")[0] + b if "@" in a else a + b
    with _open(ctx, store, read_only=True) as s:
        d = s.diff(a, b, cells=limit if cells else 0)
    if fmt == "json":
        return _print_json(d.to_dict())
    _render_diff(d, cells)


DRIFT_NOTE = ("metadata drift: rows with the same prompt and response in both versions whose provenance or "
              "judge columns changed (e.g. the same text produced by another step or judged again)")


def _render_diff(d, cells: bool) -> None:
    console = _console()
    console.print(d.summary())
    console.print(DRIFT_NOTE)
    names = sorted(set(d.sources.get("a", {})) | set(d.sources.get("b", {})))
    console.print(_table("rows by target source", ["source", d.a, d.b],
                         [[n, d.sources["a"].get(n, 0), d.sources["b"].get(n, 0)] for n in names]
                         + [["non-gold share", _pct(d.mix_ratio.get("a")), _pct(d.mix_ratio.get("b"))]]))
    if d.transitions:
        console.print(_table("source transitions (common keys)", ["from", "to", "rows"],
                             [[t["from"], t["to"], t["count"]] for t in d.transitions]))
    if d.changed_columns or d.drift_columns:
        cols = sorted(set(d.changed_columns) | set(d.drift_columns))
        console.print(_table("changed columns", ["column", "modified rows", "metadata drift rows"],
                             [[c, d.changed_columns.get(c, 0), d.drift_columns.get(c, 0)] for c in cols]))
    rows = []
    for part, st in d.lengths.items():
        for stat in ("mean", "median", "p90"):
            rows.append([f"{part} {st['unit']} {stat}", st["a"][stat], st["b"][stat]])
    console.print(_table("length distribution", ["", d.a, d.b], rows))
    if cells:
        console.print(_table("changed cells", ["key", "column", d.a, d.b],
                             [[_clip(c["key"], 24), c["column"], _clip(c["a"]), _clip(c["b"])] for c in d.cells]))


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def register(app: typer.Typer) -> None:
    """Add the `data` sub-app."""
    app.add_typer(data_app, name="data")

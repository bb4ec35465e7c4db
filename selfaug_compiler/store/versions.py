"""Dataset versions: commit, resolve, read, log, tags. Functions over a DuckDB connection.

Version content id = sha256 of canonical JSON ``{"rows": D, "parent": P, "step": S}`` where D is
sha256 over the rows sorted by key, each framed as ``len(key):key`` + content hash. The version
also stores ``rows_digest`` (sha256 over the content digest, the XOR of the row hashes and the row
count) so that its exact rows, metadata included, can be checked. The write path is in
``commit.py``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.names import check_name, shown
from selfaug_compiler.plan import canonical_json, sha256_hex
from selfaug_compiler.store.rows import ROW_COLUMNS

_VERSION_COLS = "vid, dataset, seq, id, parent, step_id, recipe_hash, message, created_at, n_rows, rows_digest"


@dataclass(frozen=True)
class Version:
    """One immutable dataset version. ``ref`` (``name@<id>``) names it exactly."""

    dataset: str
    id: str
    seq: int
    parent: str | None
    step_id: str | None
    recipe_hash: str | None
    message: str | None
    created_at: datetime | None
    n_rows: int
    rows_digest: str = ""
    vid: int = 0
    tags: tuple[str, ...] = field(default=())

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.id}"

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("vid")
        d["created_at"] = self.created_at.isoformat() if self.created_at else None
        d["tags"] = list(self.tags)
        d["ref"] = self.ref
        return d



def version_id(content_digest: str, parent: str | None, step_id: str | None) -> str:
    return sha256_hex(canonical_json({"rows": content_digest, "parent": parent, "step": step_id}))


def _version_from_row(con, row) -> Version:
    v = Version(vid=row[0], dataset=row[1], seq=row[2], id=row[3], parent=row[4], step_id=row[5],
                recipe_hash=row[6], message=row[7], created_at=row[8], n_rows=row[9], rows_digest=row[10])
    tags = con.execute("SELECT tag FROM tags WHERE dataset = ? AND id = ? ORDER BY tag", [v.dataset, v.id]).fetchall()
    return Version(**{**v.__dict__, "tags": tuple(t[0] for t in tags)})


def latest(con, dataset: str) -> Version | None:
    row = con.execute(f"SELECT {_VERSION_COLS} FROM versions WHERE dataset = ? ORDER BY seq DESC LIMIT 1", [dataset]).fetchall()
    return _version_from_row(con, row[0]) if row else None


def log(con, dataset: str) -> list[Version]:
    rows = con.execute(f"SELECT {_VERSION_COLS} FROM versions WHERE dataset = ? ORDER BY seq", [dataset]).fetchall()
    if not rows:
        _unknown_dataset(con, dataset)
    return [_version_from_row(con, r) for r in rows]


def _unknown_dataset(con, dataset: str) -> None:
    names = [r[0] for r in con.execute("SELECT name FROM datasets ORDER BY name").fetchall()]
    close = difflib.get_close_matches(dataset, names, n=3, cutoff=0.6)
    guess = f"did you mean {' or '.join(close)}? " if close else ""
    raise SelfaugError(f"unknown dataset {dataset!r}", field="dataset",
                       expected=", ".join(names) or "(the store has no datasets)", found=dataset,
                       hint=f"{guess}list datasets with `selfaug data ls`")


def resolve(con, ref: str) -> Version:
    """``NAME`` (latest), ``NAME@3`` (sequence), ``NAME@tag`` or ``NAME@<id prefix>``."""
    name, at, sel = ref.rpartition("@") if "@" in ref else (ref, "", "")
    check_name(name)
    if at and not sel:
        raise SelfaugError(f"empty version in {shown(ref)}", field="version",
                           expected="NAME (latest), NAME@3, NAME@<id prefix> or NAME@tag", found=shown(ref),
                           hint=f"drop the '@' for the latest version ({name}), or name one: see `selfaug data log {name}`")
    if not sel:
        v = latest(con, name)
        if v is None:
            _unknown_dataset(con, name)
        return v
    if sel.isdigit() and len(sel) < 8:
        rows = con.execute(f"SELECT {_VERSION_COLS} FROM versions WHERE dataset = ? AND seq = ?", [name, int(sel)]).fetchall()
    else:
        rows = con.execute(
            f"SELECT {_VERSION_COLS} FROM versions WHERE dataset = ? AND id = "
            "(SELECT id FROM tags WHERE dataset = ? AND tag = ?)", [name, name, sel]).fetchall()
        if not rows and re.fullmatch(r"[0-9a-f]{4,64}", sel):
            rows = con.execute(f"SELECT {_VERSION_COLS} FROM versions WHERE dataset = ? AND starts_with(id, ?)",
                               [name, sel]).fetchall()
    if len(rows) == 1:
        return _version_from_row(con, rows[0])
    if len(rows) > 1:
        raise SelfaugError(f"version {ref!r} is ambiguous: {len(rows)} ids start with {sel!r}",
                           hint="give more characters of the id")
    known = [f"@{v.seq} ({v.short_id})" for v in log(con, name)]
    raise SelfaugError(f"unknown version {ref!r}", field="version", expected=", ".join(known[-10:]),
                       found=sel, hint=f"see `selfaug data log {name}`")


def read(con, version: Version, *, with_hashes: bool = False) -> pa.Table:
    """The rows of a version, ordered by key."""
    extra = ", r.content_hash, r.row_hash" if with_hashes else ""
    cols = ", ".join(f"r.{c}" for c in ROW_COLUMNS)
    return con.sql(
        f"SELECT {cols}{extra} FROM version_rows vr JOIN rows r ON r.row_hash = vr.row_hash "
        "WHERE vr.vid = ? ORDER BY r.key", params=[version.vid]).to_arrow_table()


def version_for_step(con, step_id: str, dataset: str | None = None) -> Version | None:
    sql = f"SELECT {_VERSION_COLS} FROM versions WHERE step_id = ?"
    args: list[Any] = [step_id]
    if dataset is not None:
        sql += " AND dataset = ?"
        args.append(dataset)
    row = con.execute(sql + " ORDER BY created_at DESC, vid DESC LIMIT 1", args).fetchall()
    return _version_from_row(con, row[0]) if row else None


def tag(con, version: Version, tag_name: str) -> None:
    check_name(tag_name, "tag")
    if tag_name.isdigit() or re.fullmatch(r"[0-9a-f]{4,64}", tag_name):
        raise SelfaugError(f"tag {tag_name!r} would read as a version number or id",
                           hint="use a tag with a letter outside a-f, e.g. 'v1' or 'baseline'")
    con.execute("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)", [version.dataset, tag_name, version.id])


# ----------------------------------------------------------------------------- identity
def content_digest_sql(alias: str = "") -> str:
    """SQL aggregate: sha256 over the rows sorted by key, each ``len(key):key`` + content hash.

    ``commit.content_digest`` computes the same value by streaming the sorted framed rows
    through hashlib (no 1M-row string concatenation in SQL); ``verify`` uses this form."""
    p = f"{alias}." if alias else ""
    return (f"sha256(coalesce(string_agg(length({p}key)::VARCHAR || ':' || {p}key || {p}content_hash, '' "
            f"ORDER BY {p}key), ''))")


def rows_xor_sql(alias: str = "") -> str:
    p = f"{alias}." if alias else ""
    return f"coalesce(bit_xor({p}row_hash), 0::UHUGEINT)"


def rows_digest(content_digest: str, rows_xor: int, n_rows: int) -> str:
    """Identity of a version's exact rows (metadata included): the content digest, the XOR of
    the (distinct) row hashes and the row count."""
    return sha256_hex(f"{content_digest}:{rows_xor}:{n_rows}")


def find_existing(con, dataset: str, vid_id: str) -> Version | None:
    row = con.execute(f"SELECT {_VERSION_COLS} FROM versions WHERE dataset = ? AND id = ?", [dataset, vid_id]).fetchall()
    return _version_from_row(con, row[0]) if row else None

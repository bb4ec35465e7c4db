"""Diff two dataset versions: a join on row keys, computed in DuckDB.

added / removed / modified (payload changed) / unchanged (identical row) / metadata drift (same
payload, changed provenance or judge columns), the columns that changed, counts by target
source, the source transition table for common keys, the mix ratio (share of non-gold rows)
and the shift of prompt/response length distributions (token columns when every row has them,
else whitespace word counts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from selfaug_compiler.store.rows import ROW_COLUMNS
from selfaug_compiler.store.versions import Version

_COMPARED = [c for c in ROW_COLUMNS if c != "key"]


@dataclass
class DatasetDiff:
    a: str
    b: str
    added: int = 0
    removed: int = 0
    modified: int = 0
    unchanged: int = 0
    metadata_drift: int = 0
    changed_columns: dict[str, int] = field(default_factory=dict)
    drift_columns: dict[str, int] = field(default_factory=dict)
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    mix_ratio: dict[str, float | None] = field(default_factory=dict)
    lengths: dict[str, Any] = field(default_factory=dict)
    cells: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        cols = ", ".join(f"{c} {n}" for c, n in self.changed_columns.items())
        mod = f"~{self.modified} modified" + (f" ({cols})" if cols else "")
        mix = ""
        if self.mix_ratio:
            ra, rb = self.mix_ratio.get("a"), self.mix_ratio.get("b")
            mix = f"; non-gold {_pct(ra)} -> {_pct(rb)}"
        return (f"{self.a} -> {self.b}: +{self.added} added, -{self.removed} removed, {mod}, "
                f"{self.unchanged} unchanged, {self.metadata_drift} metadata drift{mix}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def diff_versions(con, va: Version, vb: Version, *, cells: int = 0) -> DatasetDiff:
    out = DatasetDiff(a=f"{va.dataset}@{va.seq}", b=f"{vb.dataset}@{vb.seq}")
    try:
        _materialize(con, "_diff_a", va.vid)
        _materialize(con, "_diff_b", vb.vid)
        _counts(con, out)
        if out.modified or out.metadata_drift:
            _changed_columns(con, out)
        _sources(con, out)
        _lengths(con, out, {"a": va.vid, "b": vb.vid})
        if cells and out.modified:
            out.cells = _cells(con, cells)
    finally:
        con.execute("DROP TABLE IF EXISTS _diff_a")
        con.execute("DROP TABLE IF EXISTS _diff_b")
        con.execute("DROP TABLE IF EXISTS _diff_pairs")
    return out


def _materialize(con, name: str, vid: int) -> None:
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT r.key, r.content_hash, r.row_hash, r.source, "
        "r.prompt_tokens, r.response_tokens "
        "FROM version_rows vr JOIN rows r ON r.row_hash = vr.row_hash WHERE vr.vid = ?", [vid])


def _counts(con, out: DatasetDiff) -> None:
    row = con.execute(
        "SELECT count(*) FILTER (WHERE b.key IS NULL), count(*) FILTER (WHERE a.key IS NULL), "
        "count(*) FILTER (WHERE a.content_hash <> b.content_hash), "
        "count(*) FILTER (WHERE a.content_hash = b.content_hash AND a.row_hash <> b.row_hash), "
        "count(*) FILTER (WHERE a.row_hash = b.row_hash) "
        "FROM _diff_a a FULL OUTER JOIN _diff_b b ON a.key = b.key").fetchall()[0]
    out.removed, out.added, out.modified, out.metadata_drift, out.unchanged = (int(x) for x in row)


def _changed_columns(con, out: DatasetDiff) -> None:
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _diff_pairs AS SELECT a.key, a.row_hash AS ha, b.row_hash AS hb, "
        "a.content_hash <> b.content_hash AS modified FROM _diff_a a JOIN _diff_b b ON a.key = b.key "
        "WHERE a.row_hash <> b.row_hash")
    exprs = ", ".join(f"count(*) FILTER (WHERE ra.{c} IS DISTINCT FROM rb.{c})" for c in _COMPARED)
    for modified, target in ((True, out.changed_columns), (False, out.drift_columns)):
        row = con.execute(
            f"SELECT {exprs} FROM _diff_pairs p JOIN rows ra ON ra.row_hash = p.ha "
            f"JOIN rows rb ON rb.row_hash = p.hb WHERE p.modified = ?", [modified]).fetchall()[0]
        target.update({c: int(n) for c, n in zip(_COMPARED, row) if n})


def _sources(con, out: DatasetDiff) -> None:
    for side, table in (("a", "_diff_a"), ("b", "_diff_b")):
        rows = con.execute(f"SELECT source, count(*) FROM {table} GROUP BY source ORDER BY source").fetchall()
        out.sources[side] = {s: int(n) for s, n in rows}
        total = sum(out.sources[side].values())
        out.mix_ratio[side] = (total - out.sources[side].get("gold", 0)) / total if total else None
    rows = con.execute(
        "SELECT a.source, b.source, count(*) FROM _diff_a a JOIN _diff_b b ON a.key = b.key "
        "GROUP BY ALL ORDER BY 3 DESC, 1, 2").fetchall()
    out.transitions = [{"from": f, "to": t, "count": int(n)} for f, t, n in rows]


def _lengths(con, out: DatasetDiff, vids: dict[str, int]) -> None:
    for part in ("prompt", "response"):
        nulls = con.execute(
            f"SELECT (SELECT count(*) FILTER (WHERE {part}_tokens IS NULL) FROM _diff_a) + "
            f"(SELECT count(*) FILTER (WHERE {part}_tokens IS NULL) FROM _diff_b)").fetchall()[0][0]
        stats: dict[str, Any] = {"unit": "tokens" if nulls == 0 else "words"}
        for side, table in (("a", "_diff_a"), ("b", "_diff_b")):
            if nulls == 0:
                values = con.sql(f"SELECT {part}_tokens AS n FROM {table}").to_arrow_table()["n"]
            else:
                values = _word_counts(con, part, vids[side])
            stats[side] = _describe(values)
        stats["mean_shift"] = (None if stats["a"]["mean"] is None or stats["b"]["mean"] is None
                               else _round(stats["b"]["mean"] - stats["a"]["mean"]))
        out.lengths[part] = stats


def _word_counts(con, part: str, vid: int):
    """Whitespace-separated words per row (vectorized in Arrow; NULL text stays NULL)."""
    import pyarrow.compute as pc

    text = con.sql(f"SELECT r.{part} AS t FROM version_rows vr JOIN rows r ON r.row_hash = vr.row_hash "
                   "WHERE vr.vid = ?", params=[vid]).to_arrow_table()["t"]
    trimmed = pc.utf8_trim_whitespace(text)
    counts = pc.list_value_length(pc.utf8_split_whitespace(trimmed))
    return pc.if_else(pc.equal(trimmed, ""), 0, counts)


def _describe(values) -> dict[str, float | None]:
    import pyarrow.compute as pc

    values = values.drop_null() if hasattr(values, "drop_null") else values
    if len(values) == 0:
        return {"mean": None, "median": None, "p90": None}
    q = pc.quantile(values, q=[0.5, 0.9], interpolation="linear").to_pylist()
    return {"mean": _round(pc.mean(values).as_py()), "median": _round(q[0]), "p90": _round(q[1])}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)


def _cells(con, limit: int) -> list[dict[str, Any]]:
    cols = ", ".join(f"ra.{c}, rb.{c}" for c in _COMPARED)
    rows = con.execute(
        f"SELECT p.key, {cols} FROM _diff_pairs p JOIN rows ra ON ra.row_hash = p.ha "
        f"JOIN rows rb ON rb.row_hash = p.hb WHERE p.modified ORDER BY p.key LIMIT ?", [limit]).fetchall()
    cells = []
    for row in rows:
        key, values = row[0], row[1:]
        for i, c in enumerate(_COMPARED):
            old, new = values[2 * i], values[2 * i + 1]
            if old != new:
                cells.append({"key": key, "column": c, "a": old, "b": new})
    return cells

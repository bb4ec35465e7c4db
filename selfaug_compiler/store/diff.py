"""Diff two dataset versions, computed in DuckDB.

Rows are shared between versions, so rows with the same row hash in both are unchanged without
being read; only rows in one version alone are matched on key (added / removed / modified /
metadata drift). Word counts are computed once per distinct row, streamed in batches.

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
_BATCH_ROWS = 65_536


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
    """Rows shared by both versions (same row hash) are unchanged without looking at them; only
    the rows in one version alone are matched on key. Each distinct row is read once per use."""
    out = DatasetDiff(a=f"{va.dataset}@{va.seq}", b=f"{vb.dataset}@{vb.seq}")
    try:
        _membership(con, va.vid, vb.vid)
        _counts(con, out)
        if out.modified or out.metadata_drift:
            _pairs(con)
            _changed_columns(con, out)
        _sources(con, out)
        _lengths(con, out)
        if cells and out.modified:
            out.cells = _cells(con, cells)
    finally:
        for table in ("_diff_m", "_diff_r", "_diff_pairs", "_diff_pr"):
            con.execute(f"DROP TABLE IF EXISTS {table}")
    return out


def _membership(con, vid_a: int, vid_b: int) -> None:
    """``_diff_r``: each distinct row of either version, with in_a / in_b; key and content hash
    only for rows in one version alone (the only ones matched on key)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _diff_m AS SELECT row_hash, bool_or(vid = $a) AS in_a, bool_or(vid = $b) AS in_b "
        "FROM version_rows WHERE vid IN ($a, $b) GROUP BY row_hash", {"a": vid_a, "b": vid_b})
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _diff_r AS SELECT m.row_hash, m.in_a, m.in_b, r.source, r.prompt_tokens, "
        "r.response_tokens, CASE WHEN m.in_a AND m.in_b THEN NULL ELSE r.key END AS key, "
        "CASE WHEN m.in_a AND m.in_b THEN NULL ELSE r.content_hash END AS content_hash "
        "FROM _diff_m m JOIN rows r USING (row_hash)")
    con.execute("DROP TABLE _diff_m")


_ONLY_A = "(SELECT * FROM _diff_r WHERE in_a AND NOT in_b)"
_ONLY_B = "(SELECT * FROM _diff_r WHERE in_b AND NOT in_a)"


def _counts(con, out: DatasetDiff) -> None:
    out.unchanged = int(con.execute("SELECT count(*) FROM _diff_r WHERE in_a AND in_b").fetchall()[0][0])
    row = con.execute(
        "SELECT count(*) FILTER (WHERE b.key IS NULL), count(*) FILTER (WHERE a.key IS NULL), "
        "count(*) FILTER (WHERE a.content_hash <> b.content_hash), "
        "count(*) FILTER (WHERE a.content_hash = b.content_hash) "
        f"FROM {_ONLY_A} a FULL OUTER JOIN {_ONLY_B} b ON a.key = b.key").fetchall()[0]
    out.removed, out.added, out.modified, out.metadata_drift = (int(x) for x in row)


def _pairs(con) -> None:
    """``_diff_pairs``: keys in both versions with different rows; ``_diff_pr``: those rows."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _diff_pairs AS SELECT a.key, a.row_hash AS ha, b.row_hash AS hb, "
        f"a.content_hash <> b.content_hash AS modified FROM {_ONLY_A} a JOIN {_ONLY_B} b ON a.key = b.key")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _diff_pr AS SELECT * FROM rows SEMI JOIN "
        "(SELECT ha AS row_hash FROM _diff_pairs UNION ALL SELECT hb FROM _diff_pairs) p USING (row_hash)")


def _changed_columns(con, out: DatasetDiff) -> None:
    exprs = ", ".join(f"count(*) FILTER (WHERE p.modified = {m} AND ra.{c} IS DISTINCT FROM rb.{c})"
                      for m in ("true", "false") for c in _COMPARED)
    row = con.execute(f"SELECT {exprs} FROM _diff_pairs p JOIN _diff_pr ra ON ra.row_hash = p.ha "
                      "JOIN _diff_pr rb ON rb.row_hash = p.hb").fetchall()[0]
    n = len(_COMPARED)
    out.changed_columns.update({c: int(k) for c, k in zip(_COMPARED, row[:n]) if k})
    out.drift_columns.update({c: int(k) for c, k in zip(_COMPARED, row[n:]) if k})


def _sources(con, out: DatasetDiff) -> None:
    rows = con.execute("SELECT source, count(*) FILTER (WHERE in_a), count(*) FILTER (WHERE in_b) "
                       "FROM _diff_r GROUP BY source ORDER BY source").fetchall()
    for i, side in ((1, "a"), (2, "b")):
        out.sources[side] = {r[0]: int(r[i]) for r in rows if r[i]}
        total = sum(out.sources[side].values())
        out.mix_ratio[side] = (total - out.sources[side].get("gold", 0)) / total if total else None
    rows = con.execute(
        "SELECT f, t, sum(n)::BIGINT FROM ("
        "SELECT source AS f, source AS t, count(*) AS n FROM _diff_r WHERE in_a AND in_b GROUP BY source "
        f"UNION ALL SELECT a.source, b.source, count(*) FROM {_ONLY_A} a JOIN {_ONLY_B} b ON a.key = b.key "
        "GROUP BY ALL) GROUP BY f, t ORDER BY 3 DESC, 1, 2").fetchall()
    out.transitions = [{"from": f, "to": t, "count": int(n)} for f, t, n in rows]


def _lengths(con, out: DatasetDiff) -> None:
    """Token counts when every row of both versions has them, else whitespace word counts,
    computed once per distinct row and then split by version."""
    nulls = con.execute("SELECT count(*) FILTER (WHERE prompt_tokens IS NULL), "
                        "count(*) FILTER (WHERE response_tokens IS NULL) FROM _diff_r").fetchall()[0]
    words = [part for part, n in zip(("prompt", "response"), nulls) if n]
    tokens = con.sql("SELECT in_a, in_b, prompt_tokens, response_tokens FROM _diff_r").to_arrow_table()
    counted = _word_count_table(con, words) if words else None
    for part in ("prompt", "response"):
        table, column = (counted, part) if part in words else (tokens, f"{part}_tokens")
        stats: dict[str, Any] = {"unit": "words" if part in words else "tokens"}
        for side in ("a", "b"):
            stats[side] = _describe(table[column].filter(table[f"in_{side}"]))
        stats["mean_shift"] = (None if stats["a"]["mean"] is None or stats["b"]["mean"] is None
                               else _round(stats["b"]["mean"] - stats["a"]["mean"]))
        out.lengths[part] = stats


def _word_count_table(con, parts: list[str]):
    """(in_a, in_b, word count per part) for every distinct row, streamed in batches so the
    text is never held whole."""
    import pyarrow as pa

    cols = ", ".join(f"r.{p}" for p in parts)
    reader = con.sql(f"SELECT d.in_a, d.in_b, {cols} FROM _diff_r d JOIN rows r USING (row_hash)"
                     ).to_arrow_reader(_BATCH_ROWS)
    batches = [pa.record_batch([b.column("in_a"), b.column("in_b")] + [_word_counts(b.column(p)) for p in parts],
                               names=["in_a", "in_b", *parts]) for b in reader]
    if not batches:
        return pa.table({"in_a": pa.array([], pa.bool_()), "in_b": pa.array([], pa.bool_()),
                         **{p: pa.array([], pa.int32()) for p in parts}})
    return pa.Table.from_batches(batches)


def _word_counts(text):
    """Whitespace-separated words per row (vectorized in Arrow; NULL text stays NULL)."""
    import pyarrow.compute as pc

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
        f"SELECT p.key, {cols} FROM _diff_pairs p JOIN _diff_pr ra ON ra.row_hash = p.ha "
        f"JOIN _diff_pr rb ON rb.row_hash = p.hb WHERE p.modified ORDER BY p.key LIMIT ?", [limit]).fetchall()
    cells = []
    for row in rows:
        key, values = row[0], row[1:]
        for i, c in enumerate(_COMPARED):
            old, new = values[2 * i], values[2 * i + 1]
            if old != new:
                cells.append({"key": key, "column": c, "a": old, "b": new})
    return cells

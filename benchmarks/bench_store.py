"""Store speed: 1M-row jsonl import vs DuckDB's own read_json (the floor), a 20%-changed second
version, its diff, and an unchanged re-commit. Prints every figure. Run:
    .venv/bin/python benchmarks/bench_store.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc


def write_jsonl(path: Path, n: int, seed: int = 0) -> None:
    """n rows: id, question, answer, a numeric field and a list (in chunks, via DuckDB)."""
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT range AS id, 'Question ' || range || ': what is ' || (range * 7 % 1000) || ' plus ' || "
        f"(range * 13 % 997) || '? Explain step by step.' AS question, "
        f"'We add ' || (range * 7 % 1000) || ' and ' || (range * 13 % 997) || '. #### ' || "
        f"((range * 7 % 1000) + (range * 13 % 997)) AS answer, (hash(range + {seed}) % 5)::INT AS difficulty, "
        f"['math', 'add'] AS tags FROM range({n})) TO '{path}' (FORMAT json)")
    con.close()


def timed(label: str, fn, results: dict):
    t0 = time.perf_counter()
    out = fn()
    results[label] = time.perf_counter() - t0
    return out


def second_version(rows: pa.Table, seed: int = 1) -> pa.Table:
    """10% modified responses, 5% removed, 5% added."""
    n = rows.num_rows
    rng = random.Random(seed)
    idx = list(range(n))
    rng.shuffle(idx)
    modified, removed = set(idx[: n // 10]), set(idx[n // 10: n // 10 + n // 20])
    keep = pa.array([i not in removed for i in range(n)])
    mod_mask = pa.array([i in modified for i in range(n)])
    response = pc.if_else(mod_mask, pc.binary_join_element_wise(rows["response"], " (revised)", ""), rows["response"])
    table = rows.set_column(rows.schema.get_field_index("response"), "response", response).filter(keep)
    extra = pa.table({"key": [f"new-{i}" for i in range(n // 20)], "prompt": [f"new prompt {i}" for i in range(n // 20)],
                      "response": [f"new answer {i}" for i in range(n // 20)]})
    from selfaug_compiler.store import normalize_rows

    return pa.concat_tables([table, normalize_rows(extra)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    from selfaug_compiler.data.sources import load_rows
    from selfaug_compiler.store import open_store

    r: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "data.jsonl"
        timed("generate jsonl", lambda: write_jsonl(src, args.rows), r)
        print(f"rows: {args.rows:,}  file: {src.stat().st_size / 1e6:.0f} MB")

        def floor():
            con = duckdb.connect(str(Path(tmp) / "floor.duckdb"))
            con.execute(f"CREATE TABLE t AS SELECT * FROM read_json('{src}', format='newline_delimited')")
            con.close()

        timed("floor: duckdb read_json into a table", floor, r)
        store_path = Path(tmp) / "store.duckdb"

        def import_v1():
            rows = load_rows(str(src), {}, "id")
            with open_store(store_path) as s:
                return s.commit("bench", rows)

        v1 = timed("versioned import (read + map + commit)", import_v1, r)
        with open_store(store_path) as s:
            base = s.read(v1)
        v2_rows = second_version(base)
        with open_store(store_path) as s:
            v2 = timed("commit v2 (10% mod, 5% del, 5% add)", lambda: s.commit("bench", v2_rows), r)
            d = timed("diff v1 v2", lambda: s.diff(v1, v2), r)
            print(d.summary())
        with open_store(store_path) as s:
            v3 = timed("unchanged re-commit of v2 (table in memory)", lambda: s.commit("bench", v2_rows), r)
        assert v3.id == v2.id
        with open_store(store_path, read_only=True) as s:
            ok = timed("verify", lambda: s.verify().ok, r)
        print(f"store file: {store_path.stat().st_size / 1e6:.0f} MB, verify ok: {ok}")

    for label, seconds in r.items():
        print(f"{label:48s} {seconds:7.2f} s")
    floor_s = r["floor: duckdb read_json into a table"]
    imp = r["versioned import (read + map + commit)"]
    print(f"import: {args.rows / imp:,.0f} rows/s, {imp / floor_s:.2f}x the floor ({args.rows / floor_s:,.0f} rows/s)")
    print(f"diff: {r['diff v1 v2']:.2f} s; unchanged re-commit: {r['unchanged re-commit of v2 (table in memory)'] / imp:.2f}x import")


if __name__ == "__main__":
    main()

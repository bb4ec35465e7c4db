"""Run records, step results, artifacts and cached evaluation results (simple tables, JSON text)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from selfaug_compiler.store import liveness


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _json(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def start_run(con, run_id: str, recipe_hash: str, plan_json: Any) -> list[str]:
    """Record a run as running, owned by this process; first record as dead the runs whose owner
    is gone (returned)."""
    gone = mark_dead_runs(con)
    pid, host, start = liveness.owner()
    con.execute("INSERT OR REPLACE INTO runs (run_id, recipe_hash, plan_json, status, started_at, ended_at, pid, "
                "host, proc_start) VALUES (?, ?, ?, 'running', ?, NULL, ?, ?, ?)",
                [run_id, recipe_hash, _json(plan_json), _now(), pid, host, start])
    return gone


def dead_runs(con) -> list[str]:
    """Runs recorded as running whose process is gone (killed with SIGKILL, machine rebooted)."""
    columns = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                         "WHERE table_name = 'runs'").fetchall()}
    if "pid" not in columns:  # a store read before its migration to v3 (read-only folder)
        return []
    rows = con.execute("SELECT run_id, pid, host, proc_start FROM runs WHERE status = 'running' "
                       "ORDER BY started_at").fetchall()
    return [run_id for run_id, pid, host, start in rows if liveness.is_gone(pid, host, start)]


def mark_dead_runs(con) -> list[str]:
    """Record the runs of ``dead_runs`` as dead (ended now); returns their ids."""
    gone = dead_runs(con)
    for run_id in gone:
        con.execute("UPDATE runs SET status = 'dead', ended_at = ? WHERE run_id = ? AND status = 'running'",
                    [_now(), run_id])
    return gone


def record_step(con, run_id: str, step_name: str, step_id: str, status: str, started_at: Any,
                ended_at: Any, result_json: Any, error: str | None = None) -> None:
    con.execute("INSERT INTO step_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, step_name, step_id, status, _ts(started_at), _ts(ended_at), _json(result_json),
                 error, _now()])


def _ts(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc).replace(tzinfo=None)
    return datetime.fromisoformat(str(value))


def finish_run(con, run_id: str, status: str) -> None:
    con.execute("UPDATE runs SET status = ?, ended_at = ? WHERE run_id = ?", [status, _now(), run_id])


def runs(con) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT run_id, recipe_hash, status, started_at, ended_at, "
        "(SELECT count(*) FROM step_runs s WHERE s.run_id = r.run_id) FROM runs r ORDER BY started_at").fetchall()
    keys = ("run_id", "recipe_hash", "status", "started_at", "ended_at", "steps")
    return [dict(zip(keys, r)) for r in rows]


def run_steps(con, run_id: str) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT step_name, step_id, status, started_at, ended_at, result_json, error FROM step_runs "
        "WHERE run_id = ? ORDER BY recorded_at", [run_id]).fetchall()
    keys = ("step_name", "step_id", "status", "started_at", "ended_at", "result", "error")
    return [dict(zip(keys, (*r[:5], json.loads(r[5]) if r[5] else None, r[6]))) for r in rows]


def step_result(con, step_id: str) -> dict | None:
    """The latest successful result of a step id (for caching), or None."""
    row = con.execute(
        "SELECT result_json FROM step_runs WHERE step_id = ? AND status IN ('ok', 'done', 'success', 'cached') "
        "AND result_json IS NOT NULL ORDER BY recorded_at DESC LIMIT 1", [step_id]).fetchall()
    return json.loads(row[0][0]) if row else None


def step_seconds(con, step_id: str) -> float | None:
    """Wall seconds of the step id's first successful execution (what a cache hit saved)."""
    row = con.execute(
        "SELECT epoch(ended_at) - epoch(started_at) FROM step_runs WHERE step_id = ? AND status = 'done' "
        "AND started_at IS NOT NULL AND ended_at IS NOT NULL ORDER BY recorded_at LIMIT 1", [step_id]).fetchall()
    return float(row[0][0]) if row and row[0][0] is not None else None


def put_artifact(con, step_id: str, kind: str, path: str, fingerprint: str, meta_json: Any) -> None:
    con.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?)",
                [step_id, kind, str(path), fingerprint, _json(meta_json), _now()])


def artifact(con, step_id: str) -> dict | None:
    row = con.execute("SELECT step_id, kind, path, fingerprint, meta_json, created_at FROM artifacts WHERE step_id = ?",
                      [step_id]).fetchall()
    if not row:
        return None
    row = row[0]
    return {"step_id": row[0], "kind": row[1], "path": row[2], "fingerprint": row[3],
            "meta": json.loads(row[4]) if row[4] else None, "created_at": row[5]}


def put_eval(con, model_fp: str, bench_fp: str, benchmark: str, metrics_json: Any, items: list[dict]) -> None:
    """Caller wraps this in a transaction: metrics and items are replaced together."""
    con.execute("DELETE FROM eval_items WHERE model_fp = ? AND bench_fp = ?", [model_fp, bench_fp])
    con.execute("INSERT OR REPLACE INTO evals VALUES (?, ?, ?, ?, ?)",
                [model_fp, bench_fp, benchmark, _json(metrics_json), _now()])
    if items:
        table = pa.table({
            "model_fp": [model_fp] * len(items), "bench_fp": [bench_fp] * len(items),
            "idx": list(range(len(items))), "item_json": [_json(i) for i in items],
        })
        con.register("_eval_items_in", table)
        con.execute("INSERT INTO eval_items SELECT model_fp, bench_fp, idx, item_json FROM _eval_items_in")
        con.unregister("_eval_items_in")


def get_eval(con, model_fp: str, bench_fp: str) -> tuple[dict, pa.Table] | None:
    row = con.execute("SELECT metrics_json FROM evals WHERE model_fp = ? AND bench_fp = ?", [model_fp, bench_fp]).fetchall()
    if not row:
        return None
    row = row[0]
    items = con.execute("SELECT item_json FROM eval_items WHERE model_fp = ? AND bench_fp = ? ORDER BY idx",
                        [model_fp, bench_fp]).fetchall()
    return json.loads(row[0]) if row[0] else {}, pa.Table.from_pylist([json.loads(i[0]) for i in items])

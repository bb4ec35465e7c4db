"""External-data replay: rows of another dataset mixed into the task data at ``ratio`` per task row.

The replay rows come from any version the plan provides (the planner ingests the recipe's
``augment.source``: a file, a packaged set or a saved HF dataset). Sampling is seeded and
independent of row order in the store: rows are sorted by key before drawing. Keys are prefixed
with ``replay:`` so they never collide with task keys.
"""

from __future__ import annotations

import random

from selfaug_compiler.augment.common import dump, load_meta


def replay_count(ratio: float, task_rows: int) -> int:
    return max(0, round(ratio * task_rows))


def sample_replay(replay_rows: list[dict], *, ratio: float, task_rows: int, seed: int,
                  step_id: str) -> tuple[list[dict], dict[str, int]]:
    """``round(ratio * task_rows)`` replay rows (all of them when fewer exist), seeded, without repeats."""
    wanted = replay_count(ratio, task_rows)
    pool = sorted((r for r in replay_rows if r.get("response")), key=lambda r: r["key"])
    picked = random.Random(f"{seed}:replay").sample(pool, min(wanted, len(pool)))
    out = [{**r, "key": f"replay:{r['key']}", "source": "replay",
            "meta": dump({**load_meta(r.get("meta")), "replay_of": r["key"], "mix_step_id": step_id})}
           for r in picked]
    return out, {"replay_wanted": wanted, "replay_available": len(pool), "replay": len(out)}

"""The mix step: builds the training set from the task rows and what the method generated.

Every output row says where its target came from (``source``); the result depends only on the
inputs and the seed. Per method:

- none: the task rows (``gold``);
- sa_sft: task rows + ``round(ratio * task_rows)`` usable self-dialogues (excluded ones skipped),
  drawn with the seed from the dialogues sorted by key;

Generated replies cut off at max_new_tokens were refused upstream (``meta.excluded`` =
``truncated``, see ``common.judge_complete`` and ``sa_sft.exclusion_reason``) unless the recipe
sets ``accept_truncated``; ``refused_truncated`` counts them per input.
- s3ft: one row per task row, ``self`` | ``paraphrase`` | ``gold`` (``s3ft.choose_targets``);
- sdft: one row per task row, ``rewrite`` | ``gold`` (``sdft.choose_rewrites``);
- replay: task rows + replay rows (``replay.sample_replay``).
"""

from __future__ import annotations

import random
from typing import Any

from selfaug_compiler.augment.common import dump, judge_complete, load_meta, truncation_counts


def _gold(task_rows: list[dict], step_id: str) -> list[dict]:
    return [{**r, "source": "gold", "meta": dump({**load_meta(r.get("meta")), "mix_step_id": step_id})}
            for r in task_rows]


def pick_dialogues(dialogues: list[dict], *, ratio: float, task_rows: int, seed: int,
                   step_id: str) -> tuple[list[dict], dict[str, int]]:
    usable = sorted((d for d in dialogues if not load_meta(d.get("meta")).get("excluded")), key=lambda d: d["key"])
    wanted = max(0, round(ratio * task_rows))
    picked = random.Random(f"{seed}:sa_sft").sample(usable, min(wanted, len(usable)))
    picked.sort(key=lambda d: d["key"])
    rows = [{**d, "meta": dump({**load_meta(d.get("meta")), "mix_step_id": step_id})} for d in picked]
    return rows, {"dialogues_generated": len(dialogues), "dialogues_usable": len(usable),
                  "dialogues_wanted": wanted, "self_dialogue": len(rows)}


def mix_rows(method: str, augment: dict[str, Any], task_rows: list[dict], parts: dict[str, list[dict]], *,
             seed: int, step_id: str) -> tuple[list[dict], dict[str, Any]]:
    """The training rows and counts by source. ``parts`` maps input roles to rows
    (``judge.self_answer``, ``judge.paraphrase``, ``judge.rewrite``, ``generate.self_dialogue``, ``replay``)."""
    from selfaug_compiler.augment import s3ft, sdft
    from selfaug_compiler.augment.replay import sample_replay

    stats: dict[str, Any] = {}
    if method == "sa_sft":
        extra, stats = pick_dialogues(parts.get("generate.self_dialogue", []), ratio=float(augment.get("ratio", 0.5)),
                                      task_rows=len(task_rows), seed=seed, step_id=step_id)
        rows = _gold(task_rows, step_id) + extra
    elif method == "s3ft":
        rows, stats = s3ft.choose_targets(task_rows, parts.get("judge.self_answer", []),
                                          parts.get("judge.paraphrase", []), step_id)
    elif method == "sdft":
        judged = parts.get("judge.rewrite")
        if judged is None and "generate.rewrite" in parts:  # a plan without the judge step
            judged, _ = judge_complete(parts["generate.rewrite"], lambda rows: sdft.judge_rewrites(rows, augment, step_id),
                                       accept_truncated=bool(augment.get("accept_truncated")),
                                       judge_name=sdft.JUDGE_NAME, step_id=step_id)
            parts = {**parts, "judge.rewrite": judged}
        rows, stats = sdft.choose_rewrites(task_rows, judged or [], step_id)
    elif method == "replay":
        extra, stats = sample_replay(parts.get("replay", []), ratio=float(augment.get("ratio", 0.5)),
                                     task_rows=len(task_rows), seed=seed, step_id=step_id)
        rows = _gold(task_rows, step_id) + extra
    else:
        rows = _gold(task_rows, step_id)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
    return rows, {"by_source": counts, **stats, "refused_truncated": truncation_counts(parts)}

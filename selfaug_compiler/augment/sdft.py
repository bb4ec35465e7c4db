"""SDFT (arXiv 2402.13669): the seed model rewrites each gold answer, given the question and the
gold as reference. A rewrite that leaks the prompt's wording ("reference answer", ...) or, for
math, whose final number differs from gold is rejected and the gold is kept: one row per example.

Steps: ``generate.rewrite`` (rows with ``source="rewrite"``) -> ``judge.rewrite`` (``check_rewrite``
as verdict columns; a rewrite cut off at max_new_tokens is refused unless ``accept_truncated``)
-> ``mix`` (``choose_rewrites``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfaug_compiler.augment.common import WorkItem, dump, gold_of, load_meta, row_seed
from selfaug_compiler.augment import conversation as conv
from selfaug_compiler.augment.prompts import render
from selfaug_compiler.judges.numeric import extract_final_number

JUDGE_NAME = "sdft_rewrite_check"


def rewrite_items(task_rows: list[dict], template: str, recipe_dir: Path | None, seed: int) -> list[WorkItem]:
    items = []
    for r in task_rows:
        gold_text, _ = gold_of(r)
        prompt = render(template, recipe_dir=recipe_dir, prompt=conv.question(r), gold=gold_text, row=r)
        items.append(WorkItem(r["key"], conv.prompt_for(r, prompt), row_seed(seed, "rewrite", r["key"]), r))
    return items


def check_rewrite(rewrite: str, gold_text: str, gold: str | None, *, leak_phrases: list[str],
                  check_final_number: bool, answer_type: str,
                  labels: list[str] | None = None) -> tuple[bool, dict[str, Any]]:
    """(accepted, why): rejected when empty, leaking a phrase, or changing the answer: the final
    number (number tasks, with ``check_final_number``) or the label it gives first (choice tasks)."""
    text = (rewrite or "").strip()
    lowered = text.lower()
    leaks = [p for p in leak_phrases if p.lower() in lowered]
    why: dict[str, Any] = {"leaks": leaks}
    ok = bool(text) and not leaks
    if not text:
        why["empty"] = True
    if check_final_number and answer_type == "number":
        want = extract_final_number(str(gold)) if gold is not None else extract_final_number(gold_text)
        got = extract_final_number(text)
        why.update(final=got, gold=want)
        ok = ok and got is not None and got == want
    if answer_type == "choice":
        from selfaug_compiler.judges.labels import extract_label

        got_label = extract_label(text, labels or [gold_text.strip()])
        why.update(label=got_label, gold=gold_text.strip())
        ok = ok and got_label is not None and got_label.lower() == gold_text.strip().lower()
    return ok, why


def judge_rewrites(rows: list[dict], params: dict[str, Any], step_id: str) -> list[dict]:
    """The rewrite rows with verdict columns (``judge_name`` ``JUDGE_NAME``)."""
    from selfaug_compiler.judges.labels import label_set

    metas = [load_meta(r.get("meta")) for r in rows]
    labels = label_set(m.get("gold_response") for m in metas) if params.get("answer_type") == "choice" else None
    out = []
    for r, meta in zip(rows, metas):
        ok, why = check_rewrite(conv.target(r) or "", meta.get("gold_response", ""), meta.get("gold"),
                                leak_phrases=list(params.get("leak_phrases") or []),
                                check_final_number=bool(params.get("check_final_number", True)),
                                answer_type=params.get("answer_type", "text"), labels=labels)
        meta["judge_step_id"] = step_id
        out.append({**r, "judge_name": JUDGE_NAME, "judge_verdict": "pass" if ok else "fail",
                    "judge_score": 1.0 if ok else 0.0, "judge_raw": json.dumps(why), "meta": dump(meta)})
    return out


def choose_rewrites(task_rows: list[dict], judged_rewrites: list[dict], step_id: str) -> tuple[list[dict], dict[str, int]]:
    rewrites = {r["key"]: r for r in judged_rewrites}
    out, counts = [], {"rewrite": 0, "gold": 0}
    for task in task_rows:
        rw = rewrites.get(task["key"])
        if rw is not None and rw.get("judge_verdict") == "pass":
            chosen = rw
        else:
            reason = "no rewrite" if rw is None else (rw.get("judge_raw") or "rejected")
            chosen = {**task, "source": "gold",
                      "meta": dump({**load_meta(task.get("meta")), "sdft_rejected": reason})}
        out.append({**chosen, "meta": dump({**load_meta(chosen.get("meta")), "mix_step_id": step_id})})
        counts[chosen["source"]] += 1
    return out, counts

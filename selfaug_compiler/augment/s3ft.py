"""S3FT (arXiv 2502.08130): train on the model's own answer when a judge accepts it, else on its
paraphrase of the gold answer when the judge accepts that, else on gold. An answer or paraphrase
cut off at max_new_tokens counts as rejected (``meta.excluded``: truncated) unless the recipe sets
``accept_truncated``, whatever the judge would say of it.

Steps (see compile/planner.py): ``generate.self_answer`` -> ``judge.self_answer`` ->
``generate.paraphrase`` (for the rejected answers only) -> ``judge.paraphrase`` -> ``mix``, which
calls ``choose_targets``. Rows are keyed by the task row's key throughout.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from selfaug_compiler.augment.common import WorkItem, dump, gold_of, load_meta, provenance, row_seed
from selfaug_compiler.augment import conversation as conv
from selfaug_compiler.augment.prompts import render

_LABEL = re.compile(r"^\s*(rewritten answer|paraphrased answer|paraphrase|answer)\s*:\s*", re.IGNORECASE)


def clean_generated_answer(text: str) -> str:
    """Strip a leading label the model sometimes echoes ("Rewritten answer: ...")."""
    return _LABEL.sub("", text or "", count=1).strip()


def answer_items(task_rows: list[dict], template: str, recipe_dir: Path | None, seed: int) -> list[WorkItem]:
    """One self-answer prompt per task row (the built-in template shows the question only)."""
    return [WorkItem(r["key"], conv.prompt_for(r, render(template, recipe_dir=recipe_dir, prompt=conv.question(r),
                                                         gold=gold_of(r)[0], row=r)),
                     row_seed(seed, "self_answer", r["key"]), r) for r in task_rows]


def paraphrase_items(task_rows: list[dict], judged_answers: list[dict], template: str,
                     recipe_dir: Path | None, seed: int) -> list[WorkItem]:
    """Paraphrase prompts for the task rows whose self-answer the judge rejected."""
    failed = {r["key"] for r in judged_answers if r.get("judge_verdict") != "pass"}
    items = []
    for r in task_rows:
        if r["key"] in failed:
            gold_text, _ = gold_of(r)
            prompt = render(template, recipe_dir=recipe_dir, prompt=conv.question(r), gold=gold_text, row=r)
            items.append(WorkItem(r["key"], conv.prompt_for(r, prompt), row_seed(seed, "paraphrase", r["key"]), r))
    return items


def generated_row(item: WorkItem, gen: Any, *, source: str, loaded: Any, step_id: str,
                  template_hash: str | None, sampling: dict[str, Any]) -> dict[str, Any]:
    """A generated row: the task prompt, the parsed generation, raw output and gold in meta."""
    task = item.row
    gold_text, gold = gold_of(task)
    meta = {**load_meta(task.get("meta")), "gold_response": gold_text, "gold": gold, "raw": gen.text,
            "finish_reason": gen.finish_reason, "rendered_prompt": item.prompt if isinstance(item.prompt, str) else None}
    response = clean_generated_answer(gen.text) if source != "self" else gen.text.strip()
    return {"key": item.key, **conv.payload(task, response), "source": source,
            "meta": dump(meta),
            **provenance(loaded, step_id=step_id, template_hash=template_hash, sampling=sampling, seed=item.seed,
                         prompt_tokens=gen.prompt_tokens, response_tokens=gen.new_tokens)}


def judge_inputs(rows: list[dict]) -> list[dict]:
    """What ``judges.verdicts.judge_items`` needs from generated rows."""
    items = []
    for r in rows:
        meta = load_meta(r.get("meta"))
        items.append({"prompt": conv.question(r), "answer": conv.target(r) or "", "gold_text": meta.get("gold_response", ""),
                      "gold": meta.get("gold"), "meta": meta})
    return items


def with_verdicts(rows: list[dict], verdicts: list[Any], step_id: str,
                  judge_template: str | None = None) -> list[dict]:
    """The rows with judge columns filled (nothing deleted: a filter is a column); a model judge's
    chat template (``models/completion.row_template``) in ``meta.judge_chat_template`` and its
    backend, model and fingerprint or server report in ``meta.judge_model``."""
    out = []
    for r, v in zip(rows, verdicts):
        meta = load_meta(r.get("meta"))
        meta["judge_step_id"] = step_id
        if judge_template is not None:
            meta["judge_chat_template"] = judge_template
        if getattr(v, "judge_model", None):
            meta["judge_model"] = v.judge_model
        out.append({**r, "judge_name": v.name, "judge_verdict": v.label, "judge_score": v.score,
                    "judge_raw": v.raw, "meta": dump(meta)})
    return out


def acceptance(rows: list[dict]) -> dict[str, Any]:
    n = len(rows)
    passed = sum(1 for r in rows if r.get("judge_verdict") == "pass")
    return {"judged": n, "accepted": passed, "acceptance_rate": round(passed / n, 4) if n else 0.0}


def choose_targets(task_rows: list[dict], judged_answers: list[dict], judged_paraphrases: list[dict],
                   step_id: str) -> tuple[list[dict], dict[str, int]]:
    """One training row per task row: ``self`` if accepted, else ``paraphrase`` if accepted, else ``gold``."""
    answers = {r["key"]: r for r in judged_answers}
    paraphrases = {r["key"]: r for r in judged_paraphrases}
    out, counts = [], {"self": 0, "paraphrase": 0, "gold": 0}
    for task in task_rows:
        key = task["key"]
        a, p = answers.get(key), paraphrases.get(key)
        trail = {"self_verdict": a and a.get("judge_verdict"), "paraphrase_verdict": p and p.get("judge_verdict")}
        for name, row in (("self", a), ("paraphrase", p)):
            excluded = row is not None and load_meta(row.get("meta")).get("excluded")
            if excluded:
                trail[f"{name}_excluded"] = excluded
        if a is not None and a.get("judge_verdict") == "pass":
            chosen = a
        elif p is not None and p.get("judge_verdict") == "pass":
            chosen = p
        else:
            chosen = {**task, "source": "gold"}
        meta = {**load_meta(chosen.get("meta")), "s3ft": trail, "mix_step_id": step_id}
        out.append({**chosen, "meta": dump(meta)})
        counts[chosen["source"]] += 1
    return out, counts

"""One entry point for judging candidates against gold with any judge kind.

Each item is ``{"prompt", "answer", "gold_text", "gold", "meta"}`` (``gold`` is the gold final
answer for number tasks, ``meta`` the task row's meta with tests for code tasks). Every verdict
keeps what the judge saw or said in ``raw``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfaug_compiler.progress import in_phase

_CODE_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


@dataclass
class Verdict:
    name: str
    passed: bool
    score: float | None
    raw: str
    judge_model: dict[str, Any] | None = None  # the model judge's provenance (judges/model_judge.py)

    @property
    def label(self) -> str:
        return "pass" if self.passed else "fail"


def extract_code(text: str) -> str:
    """The code in a reply: the fenced blocks joined when there are any, else the whole text."""
    blocks = _CODE_BLOCK.findall(text or "")
    return "\n\n".join(b.strip() for b in blocks) if blocks else (text or "")


def code_tests(meta: dict[str, Any]) -> tuple[list[str], str]:
    """(test statements, setup code) of a code task row: MBPP ``test_list`` or HumanEval ``test``."""
    if meta.get("test_list"):
        return list(meta["test_list"]), meta.get("test_setup_code") or ""
    if meta.get("test") and meta.get("entry_point"):
        return [meta["test"], f"check({meta['entry_point']})"], ""
    return [], ""


def judge_numeric(items: list[dict]) -> list[Verdict]:
    from selfaug_compiler.judges.numeric import extract_final_number

    out = []
    for it in items:
        got = extract_final_number(it["answer"])
        want = it.get("gold") or extract_final_number(it.get("gold_text"))
        want = extract_final_number(str(want)) if want is not None else None
        ok = got is not None and got == want
        out.append(Verdict("numeric", ok, 1.0 if ok else 0.0, json.dumps({"extracted": got, "gold": want})))
    return out


def judge_code(items: list[dict], timeout_s: float, progress: Any = None) -> list[Verdict]:
    from selfaug_compiler.judges.code_exec import run_tests

    out: list[Verdict] = []
    for it in items:
        if progress is not None:
            progress(len(out), len(items), unit="rows")
        tests, setup = code_tests(it.get("meta") or {})
        if not tests:
            out.append(Verdict("code_exec", False, 0.0, json.dumps({"reason": "the task row has no tests"})))
            continue
        res = run_tests(extract_code(it["answer"]), tests, timeout_s=timeout_s, setup=setup)
        raw = {"reason": res.reason, "stderr": res.stderr[-500:], "seconds": round(res.seconds, 3)}
        out.append(Verdict("code_exec", res.passed, 1.0 if res.passed else 0.0, json.dumps(raw)))
    if progress is not None:
        progress(len(out), len(items), unit="rows")
    return out


def judge_choice(items: list[dict]) -> list[Verdict]:
    """The reply's first label word against the gold label (labels: the golds of these items)."""
    from selfaug_compiler.judges.labels import extract_label, label_set

    labels = label_set(it.get("gold") or it.get("gold_text") for it in items)
    out = []
    for it in items:
        want = str(it.get("gold") or it.get("gold_text") or "").strip()
        got = extract_label(it["answer"], labels)
        ok = got is not None and got.lower() == want.lower()
        out.append(Verdict("choice", ok, 1.0 if ok else 0.0, json.dumps({"extracted": got, "gold": want})))
    return out


def judge_embedding(items: list[dict], threshold: float, embedder: Any = None, progress: Any = None) -> list[Verdict]:
    from selfaug_compiler.judges.embedding import Embedder

    embedder = embedder or Embedder.load()
    pairs = ([it["answer"] for it in items], [it["gold_text"] for it in items])
    sims = embedder.similarity(*pairs, progress=in_phase(progress, "", "rows")) if progress else embedder.similarity(*pairs)
    return [Verdict("embedding", s >= threshold, s, json.dumps({"similarity": round(s, 6), "threshold": threshold}))
            for s in sims]


def judge_model(items: list[dict], loaded: Any, template: str, recipe_dir: Path | None, batch_size: int,
                progress: Any = None) -> list[Verdict]:
    from selfaug_compiler.judges.model_judge import judge_with_model

    asked = [{"prompt": it["prompt"], "gold": it["gold_text"], "answer": it["answer"]} for it in items]
    verdicts = judge_with_model(loaded, asked, template=template, recipe_dir=recipe_dir, batch_size=batch_size,
                                progress=in_phase(progress, "", "rows") or False)
    return [Verdict("model", bool(v.passed), None if v.passed is None else float(v.passed), v.raw, v.judge_model)
            for v in verdicts]


def judge_items(items: list[dict], judge: dict[str, Any], *, loaded: Any = None, recipe_dir: Path | None = None,
                batch_size: int = 16, timeout_s: float | None = None, progress: Any = None) -> list[Verdict]:
    """Judge every item with the recipe's ``judge`` spec (``kind``, ``threshold``, ``template``).

    ``progress`` (see ``selfaug_compiler.progress``) hears about the slow kinds: code
    execution, embeddings and the model judge."""
    if not items:
        return []
    kind = judge.get("kind", "numeric")
    if kind == "numeric":
        return judge_numeric(items)
    if kind == "code_exec":
        return judge_code(items, timeout_s or judge.get("timeout_s", 5.0), progress)
    if kind == "choice":
        return judge_choice(items)
    if kind == "embedding":
        return judge_embedding(items, float(judge.get("threshold", 0.8)), progress=progress)
    if kind == "model":
        if loaded is None:
            raise ValueError("the model judge needs a loaded model")
        return judge_model(items, loaded, judge.get("template", "prompts/judge.j2"), recipe_dir, batch_size, progress)
    raise ValueError(f"unknown judge kind {kind!r}")

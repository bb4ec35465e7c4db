"""Style retention: does the tuned model still answer general prompts in its own style?

After fine-tuning on a narrow task, a small model's free-form answers to unrelated prompts drift
into the task's format (GSM8K's ``#### N``) or loop, repeating a sentence word for word; the
log-likelihood multiple-choice suite does not see it. This benchmark answers a fixed pool of
general prompts greedily (``style_prompts.py``) and scores each answer on its own, so every
prompt has a pass/fail and the paired tests (McNemar) apply between before and after.

Scoring rule ``style-score/1`` (fixed before any method was measured with it); an answer
*fails* when any of these holds:

- ``format_bleed``: it contains a marker of the task's target format (``style_markers.py``,
  derived from the task's training targets against the base model's answers).
- ``repetition``: a sentence of at least ``MIN_SENTENCE_WORDS`` (4) words occurs twice
  (case and whitespace ignored), or a run of ``REPEAT_NGRAM`` (10) words occurs twice. (10, not
  8: fluent parallel phrasing such as "Physical/Chemical properties describe the characteristics
  of a material that ..." repeats 8 words; in 24 base SmolLM2 answers looked at when the rule was
  set, before any method was measured, every 10-word repeat was a loop.)
- ``empty``: no letter or digit at all.
- ``truncated_in_repetition``: cut at ``max_new_tokens`` while still looping (its last 10 words
  occur earlier in the answer). Truncation alone (``truncated``) is reported but is no failure:
  a long, good answer is cut too.
- ``off_topic``: MiniLM cosine to the base model's answer to the same prompt below
  ``MIN_CLOSENESS`` (0.25, chosen up front: answers to the same question from related models sit
  well above it; a task solution given instead of an answer falls below). No check when the
  base answer is itself empty. ``closeness`` is reported for every prompt.

``acc`` is the pass rate.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable

from selfaug_compiler.evaluate.style_markers import find_markers

SCORE_VERSION = "style-score/1"
MIN_SENTENCE_WORDS = 4
REPEAT_NGRAM = 10
MIN_CLOSENESS = 0.25
FAILURES = ("format_bleed", "repetition", "empty", "truncated_in_repetition", "off_topic")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+")


def score_rule() -> dict[str, Any]:
    return {"version": SCORE_VERSION, "min_sentence_words": MIN_SENTENCE_WORDS, "repeat_ngram": REPEAT_NGRAM,
            "min_closeness": MIN_CLOSENESS, "failures": list(FAILURES)}


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def repeated_sentence(text: str) -> str | None:
    """The first sentence (>= 4 words) that occurs twice, normalized; None if none does."""
    seen: set[str] = set()
    for part in _SENTENCE_END.split(text):
        norm = " ".join(words(part))
        if len(norm.split()) < MIN_SENTENCE_WORDS:
            continue
        if norm in seen:
            return norm
        seen.add(norm)
    return None


def repeated_ngram(tokens: list[str], n: int = REPEAT_NGRAM) -> str | None:
    """The first run of ``n`` words that occurs twice; None if none does."""
    seen: set[tuple[str, ...]] = set()
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i:i + n])
        if gram in seen:
            return " ".join(gram)
        seen.add(gram)
    return None


def tail_repeats(tokens: list[str], n: int = REPEAT_NGRAM) -> bool:
    """Whether the last ``n`` words also occur earlier (the answer ended inside a loop)."""
    if len(tokens) < n + 1:
        return False
    tail = tokens[-n:]
    return any(tokens[i:i + n] == tail for i in range(len(tokens) - n))


def is_empty(text: str) -> bool:
    return not any(ch.isalnum() for ch in text or "")


def score_answer(output: str, finish_reason: str, markers: Iterable[Any], closeness: float | None) -> dict[str, Any]:
    """The flags of one answer and its pass/fail (``acc`` 1.0 = pass)."""
    tokens = words(output)
    repeated = repeated_sentence(output) or repeated_ngram(tokens)
    hits = find_markers(output, markers)
    truncated = finish_reason == "length"
    flags = {
        "format_bleed": bool(hits),
        "repetition": repeated is not None,
        "empty": is_empty(output),
        "truncated_in_repetition": truncated and tail_repeats(tokens),
        "off_topic": closeness is not None and closeness < MIN_CLOSENESS,
    }
    passed = not any(flags.values())
    return {**flags, "truncated": truncated, "markers_hit": hits, "repeated": repeated,
            "closeness": closeness, "pass": passed, "acc": float(passed)}


def closeness(outputs: list[str], base_outputs: list[str], embedder_factory: Any = None,
              progress: Any = None) -> list[float | None]:
    """MiniLM cosine of each answer to the base answer (1.0 when identical, None when the base
    answer is empty). The embedder is loaded only when some pair differs; ``progress(done,
    total)`` counts the embedded pairs."""
    out: list[float | None] = [None if is_empty(b) else (1.0 if a == b else float("nan"))
                               for a, b in zip(outputs, base_outputs)]
    todo = [i for i, v in enumerate(out) if v is not None and v != v]
    if todo:
        if embedder_factory is None:
            from selfaug_compiler.judges.embedding import Embedder

            embedder_factory = Embedder.load
        embedder = embedder_factory()
        pairs = ([outputs[i] for i in todo], [base_outputs[i] for i in todo])
        sims = embedder.similarity(*pairs, progress=progress) if progress is not None else embedder.similarity(*pairs)
        for i, sim in zip(todo, sims):
            out[i] = round(float(sim), 6)
    return out


def rates(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-category rates (share of prompts), the truncation rate and the mean closeness."""
    n = len(items) or 1
    counts = Counter(flag for row in items for flag in (*FAILURES, "truncated") if row.get(flag))
    close = [row["closeness"] for row in items if row.get("closeness") is not None]
    out = {f"{flag}_rate": counts.get(flag, 0) / n for flag in (*FAILURES, "truncated")}
    out["closeness_mean"] = sum(close) / len(close) if close else None
    out["mean_new_tokens"] = sum(row.get("new_tokens", 0) for row in items) / n
    return out

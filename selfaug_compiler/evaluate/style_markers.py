"""Markers of a task's target format, derived from the task data (never hand-listed).

A *marker* is a short pattern that most of the task's training targets contain and the base
model's own answers to the general prompts (the *background*) almost never do: ``####`` and the
``<<48/2=24>>`` calculator annotations of GSM8K, a label line such as ``entailment`` for a
classification task. An answer of the tuned model that contains one has taken on the task's
format ("format bleed").

Rule ``style-markers/1`` (deterministic; depends on the task targets and the background only):

1. Normalize a text: every run of digits becomes ``0``; a whitespace run holding a newline
   becomes one ``\\n``, any other whitespace run one space; ends stripped. Case is kept.
2. Features of a normalized text, counted once per text (document frequency):
   - ``ngram``: character n-grams, n = 3..5, holding at least two symbol characters (neither a
     letter/digit nor whitespace). Plain words never qualify (vocabulary is content, not
     format), nor does plain arithmetic such as ``0*0`` (one symbol): format constructs are
     punctuation-dense (``####``, ``<<0``, ``**``, a code fence).
   - ``line``: a whole line (stripped, 1..40 characters).
3. A feature is a marker when it occurs in at least ``MIN_TASK_SHARE`` (50%) of the task targets
   and in at most ``MAX_BACKGROUND_SHARE`` (2%) of the background answers. Fewer than
   ``MIN_TASK_TEXTS`` targets give no markers.
4. Redundant n-grams are dropped: shortest first, an n-gram containing an already kept n-gram
   is skipped (an answer containing it contains the shorter one).
5. At most ``TOP_K`` (16) markers: highest task share first, then shorter, then by text.

Because the background is the base model's answers, the base model's own bleed rate is at most
2% by construction: the benchmark measures format the tuned model *took on*.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

RULE_VERSION = "style-markers/1"
NGRAM_SIZES = (3, 4, 5)
MIN_SYMBOLS = 2
MAX_LINE_CHARS = 40
MIN_TASK_SHARE = 0.5
MAX_BACKGROUND_SHARE = 0.02
MIN_TASK_TEXTS = 5
TOP_K = 16

_DIGITS = re.compile(r"\d+")
_NEWLINE_SPACE = re.compile(r"\s*\n\s*")
_SPACE = re.compile(r"[^\S\n]+")


@dataclass(frozen=True)
class Marker:
    kind: str  # "ngram" | "line"
    text: str  # in normalized form
    task_share: float
    background_share: float

    def to_json(self) -> dict:
        return {"kind": self.kind, "text": self.text, "task_share": round(self.task_share, 4),
                "background_share": round(self.background_share, 4)}


def marker_rule() -> dict:
    """The rule's version and settings (they enter the benchmark fingerprint)."""
    return {"version": RULE_VERSION, "ngram_sizes": list(NGRAM_SIZES), "min_symbols": MIN_SYMBOLS,
            "max_line_chars": MAX_LINE_CHARS,
            "min_task_share": MIN_TASK_SHARE, "max_background_share": MAX_BACKGROUND_SHARE,
            "min_task_texts": MIN_TASK_TEXTS, "top_k": TOP_K}


def normalize(text: str) -> str:
    text = _DIGITS.sub("0", text or "")
    text = _NEWLINE_SPACE.sub("\n", text)
    return _SPACE.sub(" ", text).strip()


def _symbols(gram: str) -> int:
    return sum(1 for ch in gram if not ch.isalnum() and not ch.isspace())


def features(text: str) -> set[tuple[str, str]]:
    """The (kind, text) features of one normalized text, each once."""
    out: set[tuple[str, str]] = set()
    for n in NGRAM_SIZES:
        for i in range(len(text) - n + 1):
            gram = text[i:i + n]
            if _symbols(gram) >= MIN_SYMBOLS:
                out.add(("ngram", gram))
    for line in text.split("\n"):
        line = line.strip()
        if 0 < len(line) <= MAX_LINE_CHARS:
            out.add(("line", line))
    return out


def _shares(texts: list[str]) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        counts.update(features(normalize(text)))
    return counts


def derive_markers(task_texts: Iterable[str], background: Iterable[str]) -> list[Marker]:
    """The markers of the task targets against the background answers (rule ``style-markers/1``)."""
    task = [t for t in task_texts if t]
    bg = list(background)
    if len(task) < MIN_TASK_TEXTS:
        return []
    task_counts, bg_counts = _shares(task), _shares(bg)
    candidates = []
    for feat, count in task_counts.items():
        share = count / len(task)
        bg_share = bg_counts.get(feat, 0) / len(bg) if bg else 0.0
        if share >= MIN_TASK_SHARE and bg_share <= MAX_BACKGROUND_SHARE:
            candidates.append(Marker(feat[0], feat[1], share, bg_share))
    kept: list[Marker] = []
    for m in sorted(candidates, key=lambda m: (len(m.text), m.kind, m.text)):
        if m.kind == "ngram" and any(k.kind == "ngram" and k.text in m.text for k in kept):
            continue
        kept.append(m)
    kept.sort(key=lambda m: (-m.task_share, len(m.text), m.kind, m.text))
    return kept[:TOP_K]


def find_markers(answer: str, markers: Iterable[Marker | dict]) -> list[str]:
    """The markers an answer contains (n-grams as substrings, lines as whole lines)."""
    text = normalize(answer)
    lines = {line.strip() for line in text.split("\n")}
    hits = []
    for m in markers:
        kind, marker = (m["kind"], m["text"]) if isinstance(m, dict) else (m.kind, m.text)
        if (kind == "ngram" and marker in text) or (kind == "line" and marker in lines):
            hits.append(marker)
    return hits

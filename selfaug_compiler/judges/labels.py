"""Classification as generation: which of a task's label words a free-form reply gives.

A reply counts as the label that appears first in it as a whole word (case-insensitive), so
"Positive." and "The review is negative, because ..." are read as an instruct model means them;
a reply naming no label has none. Longer labels win ties at the same position ("not
entailment" over "entailment").
"""

from __future__ import annotations

import re
from typing import Iterable


def label_set(golds: Iterable[str | None]) -> list[str]:
    """The distinct label words of a task, in first-seen order."""
    seen: dict[str, None] = {}
    for gold in golds:
        if gold is not None and str(gold).strip():
            seen.setdefault(str(gold).strip(), None)
    return list(seen)


def extract_label(text: str | None, labels: list[str]) -> str | None:
    best: tuple[int, int, str] | None = None
    for label in labels:
        match = re.search(rf"(?<![\w]){re.escape(label)}(?![\w])", text or "", flags=re.IGNORECASE)
        if match and (best is None or (match.start(), -len(label)) < (best[0], best[1])):
            best = (match.start(), -len(label), label)
    return best[2] if best else None

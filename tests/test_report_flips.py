"""Right-to-wrong examples (issue 15.7): which items, what the report shows in the terminal and HTML."""

from __future__ import annotations

from selfaug_compiler.report.flips import dropped, flip_lines, flips_html, right_to_wrong


def _rows(accs: dict[str, int], tag: str) -> list[dict]:
    return [{"id": i, "acc": float(a), "output": f"{tag} answer {i}", "prompt": f"question {i}?", "gold": f"gold {i}"}
            for i, a in accs.items()]


def test_right_to_wrong_picks_the_first_flips_in_id_order() -> None:
    before = _rows({"q5": 1, "q1": 1, "q2": 0, "q3": 1, "q4": 1, "q9": 1}, "base")
    after = _rows({"q1": 0, "q2": 1, "q3": 1, "q4": 0, "q5": 0, "q9": 0}, "tuned")
    got = right_to_wrong(before, after, k=3)
    assert [g["id"] for g in got] == ["q1", "q4", "q5"]  # q2 went wrong->right, q3 stayed right
    assert got[0] == {"id": "q1", "prompt": "question q1?", "gold": "gold q1", "before": "base answer q1",
                      "after": "tuned answer q1"}
    assert right_to_wrong(before, before) == []


def test_multiple_choice_rows_show_the_chosen_answer_and_long_text_is_clipped() -> None:
    before = [{"id": "1", "acc": 1.0, "pred": 2, "gold": 2}]
    after = [{"id": "1", "acc": 0.0, "pred": 0, "gold": 2}]
    (ex,) = right_to_wrong(before, after)
    assert (ex["before"], ex["after"], ex["gold"], ex["prompt"]) == ("choice 2", "choice 0", "choice 2", None)
    (long,) = right_to_wrong([{"id": "1", "acc": 1.0, "output": "ok"}], [{"id": "1", "acc": 0.0, "output": "x" * 1000}])
    assert long["after"].endswith("…") and len(long["after"]) == 401 and long["gold"] is None


def test_only_significant_retention_drops_and_both_renderings() -> None:
    assert dropped({"category": "retention", "significant": True, "delta": -5.0})
    assert not dropped({"category": "retention", "significant": False, "delta": -5.0})
    assert not dropped({"category": "retention", "significant": True, "delta": 5.0})
    assert not dropped({"category": "in_domain", "significant": True, "delta": -5.0})
    report = {"benchmarks": [{"benchmark": "qa_closed", "right_to_wrong": [
        {"id": "trivia_qa/1", "prompt": "Who wrote <Hamlet>?", "gold": "Shakespeare", "before": "William Shakespeare",
         "after": "Answer: 42"}]}, {"benchmark": "arc_easy"}]}
    lines = flip_lines(report)
    assert lines[0].startswith("qa_closed: right before, wrong after")
    assert "before: William Shakespeare" in lines[2] and "after:  Answer: 42" in lines[3]
    page = flips_html(report)
    assert "Who wrote &lt;Hamlet&gt;?" in page and "<td>William Shakespeare</td><td>Answer: 42</td>" in page
    assert flips_html({"benchmarks": [{"benchmark": "arc_easy"}]}) == ""

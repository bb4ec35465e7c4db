"""Items that went from right to wrong (issue 15.7): for every retention benchmark with a
significant drop, a few items the base model answered right and the fine-tuned model wrong,
with both answers side by side. Read from the per-item results the evaluate steps stored
(generation rows carry ``prompt``, ``gold`` and ``output``; style_retention rows ``prompt`` and
``output``; multiple-choice rows the chosen answer's index as ``pred``). The ``k`` items are the
first flipped ones in item-id order, so the choice never depends on the run.
"""

from __future__ import annotations

import html
from typing import Any

EXAMPLES = 3
CLIP = 400  # characters of a prompt or answer kept in report.json


def _clip(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= CLIP else text[:CLIP] + "…"


def _answer(row: dict[str, Any]) -> str | None:
    if row.get("output") is not None:
        return _clip(row["output"])
    pred = row.get("pred")
    return f"choice {pred}" if isinstance(pred, int) else _clip(pred)  # multiple choice: the index picked


def _gold(row: dict[str, Any]) -> str | None:
    gold = row.get("gold")
    return f"choice {gold}" if isinstance(gold, int) and not isinstance(gold, bool) else _clip(gold)


def right_to_wrong(before: list[dict[str, Any]], after: list[dict[str, Any]], k: int = EXAMPLES) -> list[dict[str, Any]]:
    """Up to ``k`` items with acc 1 before and 0 after, with their prompts and both answers."""
    after_by_id = {str(r["id"]): r for r in after if "id" in r}
    out = []
    for b in sorted((r for r in before if "id" in r), key=lambda r: str(r["id"])):
        a = after_by_id.get(str(b["id"]))
        if a is None or not (b.get("acc") == 1 and a.get("acc") == 0):
            continue
        out.append({"id": str(b["id"]), "prompt": _clip(b.get("prompt") or a.get("prompt")),
                    "gold": _gold(b), "before": _answer(b), "after": _answer(a)})
        if len(out) == k:
            break
    return out


def dropped(row: dict[str, Any]) -> bool:
    return row.get("category") == "retention" and bool(row.get("significant")) and (row.get("delta") or 0) < 0


def flip_lines(report: dict[str, Any], width: int = 100) -> list[str]:
    """Terminal lines: per benchmark, each example's prompt, then before / after answers."""
    def one_line(text: str | None) -> str:
        text = " ".join(str(text or "–").split())
        return text if len(text) <= width else text[:width - 1] + "…"

    lines = []
    for r in report.get("benchmarks", []):
        if not r.get("right_to_wrong"):
            continue
        lines.append(f"{r['benchmark']}: right before, wrong after (first {len(r['right_to_wrong'])} in id order)")
        for ex in r["right_to_wrong"]:
            lines.append(f"  {ex['id']}: {one_line(ex['prompt'])}" + (f"  [gold: {one_line(ex['gold'])}]" if ex.get("gold") else ""))
            lines.append(f"    before: {one_line(ex['before'])}")
            lines.append(f"    after:  {one_line(ex['after'])}")
    return lines


def flips_html(report: dict[str, Any]) -> str:
    parts = []
    for r in report.get("benchmarks", []):
        if not r.get("right_to_wrong"):
            continue
        rows = ["<table><tr><th>item</th><th>prompt</th><th>gold</th><th>before (right)</th><th>after (wrong)</th></tr>"]
        for ex in r["right_to_wrong"]:
            cells = [ex["id"], ex.get("prompt") or "–", ex.get("gold") or "–", ex.get("before") or "–",
                     ex.get("after") or "–"]
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        rows.append("</table>")
        parts.append(f"<h3>{html.escape(r['benchmark'])}: right before fine-tuning, wrong after</h3>{''.join(rows)}")
    if not parts:
        return ""
    return "<h2>What the drop looks like</h2>" + "".join(parts)

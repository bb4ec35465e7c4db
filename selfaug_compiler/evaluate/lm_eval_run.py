"""``lm_eval:`` benchmarks at run time: lm-evaluation-harness's own tasks, metrics and requests,
scored on the step's already-loaded model, with per-item results stored like packaged benchmarks.

The task is loaded by lm_eval's ``TaskManager`` over a small scope (``lm_eval_spec.locate``);
the item subset is selfaug's (``registry.select_subset``: ``limit`` items of lowest
``sha256(seed:id)``, id = ``<task>/<doc_id>``) and goes to lm_eval as ``samples``. The run is
``lm_eval.simple_evaluate`` with ``log_samples=True`` on an ``HFLM`` wrapping the loaded model
and tokenizer (so selfaug's dtype, device and chat-template decisions apply). Each logged sample
becomes one item: ``id``, ``task``, ``doc_id``, ``target``, every metric of every filter
(``exact_match``, ``exact_match,flexible-extract``, ...), ``lls``/``greedy``/``pred`` for
log-likelihood tasks or ``output``/``pred`` for generation, and ``acc`` = the declared pass/fail
metric (default: ``acc`` for multiple_choice/loglikelihood, ``exact_match`` for generate_until).

The fingerprint (cache key with the model key) covers the lm_eval version, every task's resolved
config (``dump_config``, functions by source), the datasets' fingerprints, the selected items
and the settings (few-shot count and seed, chat template, generation kwargs, metric, filter);
batch size is not in it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.evaluate.registry import Benchmark, select_subset

FORMAT = "selfaug-lm_eval/1"
BACKEND = "hf"
LOGLIK_TYPES = ("multiple_choice", "loglikelihood", "loglikelihood_rolling")
SETTINGS_DEFAULTS: dict[str, Any] = {"num_fewshot": None, "fewshot_seed": 1234, "apply_chat_template": False,
                                     "fewshot_as_multiturn": None, "system_instruction": None,
                                     "gen_kwargs": None, "metric": None, "filter": None}


@dataclass(frozen=True)
class DocRef:
    """One lm_eval document of a task: the unit of the subset and of the per-item results."""

    id: str  # <task>/<doc_id>
    task: str
    doc_id: int
    n_choices: int = 0  # multiple choice: for the chance level

    kind = "lm_eval"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id}


@dataclass
class LmEvalBenchmark(Benchmark):
    tasks: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # lm_eval Task objects
    task_manager: Any = field(default=None, repr=False, compare=False)  # the scoped TaskManager
    task_fingerprint: str = ""  # lm_eval version + configs + dataset fingerprints

    @property
    def fingerprint(self) -> str:
        payload = {"format": FORMAT, "task": self.task_fingerprint, "settings": self.settings,
                   "items": [item.id for item in self.items]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]

    @property
    def chance(self) -> float:
        choices = [getattr(i, "n_choices", 0) for i in self.items]
        if self.type != "multiple_choice" or not choices or not all(choices):
            return 0.0
        return sum(1.0 / n for n in choices) / len(choices)

    def score(self, loaded: Any, *, batch_size: int = 16, progress: Any = None) -> tuple[dict, list]:
        """The ``core.run_benchmark`` hook: run lm_eval on ``loaded``."""
        return run_lm_eval(loaded, self, batch_size=batch_size, progress=progress)


def settings_for(raw: dict[str, Any] | None) -> dict[str, Any]:
    """The recipe's settings of one task over the defaults (``limit`` is handled by the caller)."""
    out = dict(SETTINGS_DEFAULTS)
    out.update({k: v for k, v in (raw or {}).items() if k != "limit"})
    return out


def _task_manager(scope: list[Path]) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(p) for p in scope], include_defaults=False)


def _load_tasks(spec: str, scope: list[Path], name: str) -> tuple[dict[str, Any], Any]:
    try:
        manager = _task_manager(scope)
        return manager.load([spec])["tasks"], manager
    except KeyError:  # a name whose group refers to tasks outside the scope: the full index
        from lm_eval.tasks import TaskManager

        try:
            manager = TaskManager(include_path=[str(p) for p in scope[1:]] or None)
            return manager.load([spec])["tasks"], manager
        except Exception as exc:
            raise SelfaugError(f"lm_eval cannot load `{name}`: {exc}", field="benchmark") from None
    except Exception as exc:  # a dataset that is not there, a broken YAML: lm_eval's own message
        raise SelfaugError(f"lm_eval cannot load `{name}`: {type(exc).__name__}: {exc}", field="benchmark",
                           hint="`selfaug validate` checks the task and its data offline") from None


def _config_fingerprint(tasks: dict[str, Any]) -> str:
    from selfaug_compiler.evaluate.lm_eval_spec import lm_eval_version

    parts: dict[str, Any] = {"lm_eval": lm_eval_version(), "backend": BACKEND, "tasks": {}}
    for name, task in sorted(tasks.items()):
        dataset = getattr(task, "dataset", None) or {}
        fps = {split: getattr(ds, "_fingerprint", None) for split, ds in dict(dataset).items()}
        parts["tasks"][name] = {"config": task.dump_config(), "datasets": fps}
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _doc_refs(name: str, task: Any) -> list[DocRef]:
    docs = task.eval_docs
    multiple_choice = task.config.output_type == "multiple_choice"
    out = []
    for i, doc in enumerate(docs):
        n = len(task.doc_to_choice(doc)) if multiple_choice else 0
        out.append(DocRef(f"{name}/{i}", name, i, n))
    return out


def load_lm_eval_benchmark(name: str, *, base_dir: Path, include_path: list[str] | None = None,
                           settings: dict[str, Any] | None = None, limit: int | None = None,
                           seed: int = 0) -> LmEvalBenchmark:
    """The task(s) of ``lm_eval:...`` loaded, with selfaug's seeded subset of their documents."""
    from selfaug_compiler.evaluate.lm_eval_spec import LmEvalProblem, locate

    try:
        located = locate(name, base_dir=base_dir, include_path=include_path or [])
    except LmEvalProblem as problem:
        raise SelfaugError(problem.message, field="benchmark", expected=problem.expected, hint=problem.hint) from None
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    tasks, manager = _load_tasks(located.task_spec, located.scope, name)
    if not tasks:
        raise SelfaugError(f"`{name}` holds no lm-eval task", field="benchmark")
    refs = [ref for task_name, task in sorted(tasks.items()) for ref in _doc_refs(task_name, task)]
    own_limit = (settings or {}).get("limit")
    items = select_subset(refs, own_limit if own_limit is not None else limit, seed)
    kinds = {t.config.output_type for t in tasks.values()}
    bench_type = "multiple_choice" if kinds <= set(LOGLIK_TYPES) else "generation"
    return LmEvalBenchmark(name, bench_type, None, items, f"lm_eval=={_version()}:{located.target}",
                           {"lm_eval": settings_for(settings)}, len(refs), tasks=tasks, task_manager=manager,
                           task_fingerprint=_config_fingerprint(tasks))


def _version() -> str:
    from selfaug_compiler.evaluate.lm_eval_spec import lm_eval_version

    return lm_eval_version()


# ----------------------------------------------------------------------------- running
def run_lm_eval(loaded: Any, bench: LmEvalBenchmark, *, batch_size: int = 16,
                progress: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    s = bench.settings["lm_eval"]
    replicate = bench.settings.get("replicate") or {}
    wanted: dict[str, list[int]] = {}
    for item in bench.items:
        wanted.setdefault(item.task, []).append(item.doc_id)
    complete = all(len(ids) == len(bench.tasks[t].eval_docs) for t, ids in wanted.items()) and \
        set(wanted) == set(bench.tasks)
    if progress is not None:
        progress(0, len(bench.items), unit="items")
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer,
              batch_size=int(replicate.get("batch_size") or batch_size))
    chat = bool(s["apply_chat_template"])
    multiturn = chat if s["fewshot_as_multiturn"] is None else bool(s["fewshot_as_multiturn"])
    results = lm_eval.simple_evaluate(
        model=lm, tasks=[bench.tasks[t] for t in sorted(wanted)],
        samples=None if complete else {t: sorted(ids) for t, ids in wanted.items()},  # lm_eval needs them sorted
        task_manager=bench.task_manager,
        num_fewshot=s["num_fewshot"], fewshot_random_seed=int(s["fewshot_seed"]),
        apply_chat_template=chat, fewshot_as_multiturn=multiturn, system_instruction=s["system_instruction"],
        gen_kwargs=dict(s["gen_kwargs"]) if s["gen_kwargs"] else None, log_samples=True, bootstrap_iters=0)
    items = items_from_samples(results["samples"], bench, s)
    if progress is not None:
        progress(len(items), len(bench.items), unit="items")
    from selfaug_compiler.evaluate.core import summarize

    extra = {"lm_eval": {"results": _plain(results.get("results", {})), "n_shot": _plain(results.get("n-shot", {})),
                         "metric": items[0].get("metric") if items else None}}
    return summarize(bench, items, extra), items


def _plain(value: Any) -> Any:
    """JSON-safe copy (numpy scalars to float, N/A strings kept)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def default_metric(output_type: str) -> str:
    return "exact_match" if output_type == "generate_until" else "acc"


def items_from_samples(samples: dict[str, list[dict[str, Any]]], bench: LmEvalBenchmark,
                       settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One result row per document, in the benchmark's item order."""
    rows: dict[str, dict[str, Any]] = {}
    for task_name, logged in samples.items():
        output_type = bench.tasks[task_name].config.output_type
        filters = list(dict.fromkeys(s["filter"] for s in logged))
        chosen = settings["filter"] or filters[0]
        if chosen not in filters:
            raise SelfaugError(f"lm-eval task `{task_name}` has no filter `{chosen}`", field="filter",
                               expected=" | ".join(filters))
        metric = settings["metric"] or default_metric(output_type)
        for sample in logged:
            row = rows.setdefault(f"{task_name}/{sample['doc_id']}", _base_row(task_name, sample, chosen))
            main = sample["filter"] == chosen
            for m in sample["metrics"]:
                row[m if main else f"{m},{sample['filter']}"] = _plain(sample[m])
            if main:
                _responses(row, sample)
                if metric not in sample["metrics"]:
                    raise SelfaugError(f"lm-eval task `{task_name}` reports no metric `{metric}`", field="metric",
                                       expected=" | ".join(sample["metrics"]),
                                       hint="set eval.lm_eval.tasks.<benchmark>.metric to one of them")
                row["acc"] = float(sample[metric])
                row["metric"] = metric
    missing = [i.id for i in bench.items if i.id not in rows]
    if missing:
        raise SelfaugError(f"lm_eval returned no result for {len(missing)} items of `{bench.name}` (e.g. {missing[0]})")
    return [rows[i.id] for i in bench.items]


def _base_row(task_name: str, sample: dict[str, Any], chosen: str) -> dict[str, Any]:
    return {"id": f"{task_name}/{sample['doc_id']}", "task": task_name, "doc_id": int(sample["doc_id"]),
            "target": _plain(sample["target"]), "filter": chosen}


def _responses(row: dict[str, Any], sample: dict[str, Any]) -> None:
    resps = sample["filtered_resps"]
    if resps and all(isinstance(r, (tuple, list)) and len(r) == 2 and isinstance(r[1], bool) for r in resps):
        from selfaug_compiler.evaluate.loglik import argmax_first

        row["lls"] = [float(r[0]) for r in resps]
        row["greedy"] = [bool(r[1]) for r in resps]
        row["pred"] = argmax_first(row["lls"])
    else:
        raw = sample["resps"][0] if sample["resps"] else []
        row["output"] = raw[0] if isinstance(raw, list) and raw else raw
        row["pred"] = resps[0] if resps else None

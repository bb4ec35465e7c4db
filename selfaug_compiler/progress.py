"""One progress mechanism for every long loop: a rich bar on a terminal, plain lines otherwise.

Code that works through items calls a progress function (``Progress`` or anything with the
same signature; ``no_progress`` does nothing)::

    progress(done, total, phase="", *, unit="items", note="")

``done`` of ``total`` units of one *phase*. A step with several loops names them (style
retention: ``base answers``, ``answers``, ``closeness``); a new phase starts a new count. The
first call of a phase is its baseline for the rate, so a loop reports ``done=0`` (or what an
earlier, interrupted attempt finished) before it starts. ``note`` is trailing information
(``loss 0.4321``, ``62 tok/s``).

Where it goes: when the stream (stderr) is a terminal, a rich progress bar with the count, the
rate and the time left; otherwise one plain line at most every ``$SELFAUG_PROGRESS_INTERVAL``
seconds (default 15) and a last one when the phase completes::

    step eval.before.arc_easy: 40/100 items, 12.3 items/s, ETA 0:05
    step eval.before.arc_easy: 100/100 items, 12.5 items/s, done in 0:08

Kept free of heavy imports (``validate``/``data`` import nothing from here, but steps do
early); rich is imported only on a terminal.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, TextIO

DEFAULT_INTERVAL_S = 15.0
INTERVAL_ENV = "SELFAUG_PROGRESS_INTERVAL"
QUIET_FINAL_S = 3.0  # a phase shorter than this (and than the interval) gets no plain line


class ProgressFn(Protocol):
    def __call__(self, done: int, total: int | None, phase: str = "", *, unit: str = "items",
                 note: str = "") -> None: ...


def no_progress(done: int, total: int | None, phase: str = "", *, unit: str = "items", note: str = "") -> None:
    """A progress function that shows nothing (the default of a ``StepContext``)."""


def in_phase(progress: ProgressFn | None, phase: str, unit: str = "items") -> Callable[..., None] | None:
    """``progress`` with the phase and unit fixed, for code that reports ``(done, total)`` only
    (None stays None)."""
    if progress is None:
        return None

    def report(done: int, total: int | None, *_: Any, note: str = "", **__: Any) -> None:
        progress(done, total, phase, unit=unit, note=note)

    return report


def interval_from_env() -> float:
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        return max(0.0, float(raw)) if raw.strip() else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S


def format_duration(seconds: float) -> str:
    """``0:05``, ``12:30``, ``1:02:03``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_rate(rate: float | None, unit: str) -> str:
    """``12.3 items/s``; slow loops as ``4.2 s/step``."""
    if rate is None or rate <= 0:
        return f"? {unit}/s"
    if rate >= 1:
        return f"{rate:.1f} {unit}/s"
    return f"{1 / rate:.1f} s/{unit[:-1] if unit.endswith('s') else unit}"


@dataclass
class _Phase:
    name: str
    unit: str
    total: int | None
    start_done: int
    start_t: float
    done: int = 0
    t: float = 0.0
    note: str = ""
    printed_t: float | None = None  # when the last plain line was printed
    finished: bool = False

    def rate(self) -> float | None:
        elapsed = self.t - self.start_t
        return (self.done - self.start_done) / elapsed if elapsed > 0 and self.done > self.start_done else None

    def eta(self) -> float | None:
        rate = self.rate()
        if rate is None or self.total is None:
            return None
        return max(0, self.total - self.done) / rate


def plain_line(label: str, phase: _Phase) -> str:
    """One progress line: ``LABEL: [PHASE ]DONE/TOTAL UNIT, RATE, ETA m:ss[ (NOTE)]``."""
    count = f"{phase.done}/{phase.total}" if phase.total is not None else f"{phase.done}"
    parts = [f"{phase.name + ' ' if phase.name else ''}{count} {phase.unit}", format_rate(phase.rate(), phase.unit)]
    if phase.finished:
        parts.append(f"done in {format_duration(phase.t - phase.start_t)}")
    else:
        eta = phase.eta()
        parts.append(f"ETA {format_duration(eta)}" if eta is not None else "ETA ?")
    note = f" ({phase.note})" if phase.note else ""
    return f"{label}: {', '.join(parts)}{note}"


class Progress:
    """The progress of one labelled task (a step, one benchmark of ``selfaug eval``)."""

    def __init__(self, label: str, *, stream: TextIO | None = None, interval_s: float | None = None,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_from_env() if interval_s is None else max(0.0, interval_s)
        self.tty = _isatty(self.stream) if tty is None else tty
        self.clock = clock
        self.phase: _Phase | None = None
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int | None, phase: str = "", *, unit: str = "items",
                 note: str = "") -> None:
        now = self.clock()
        current = self.phase
        if current is None or current.name != phase or current.unit != unit:
            self._end_phase()
            current = self.phase = _Phase(phase, unit, total, done, now, done, now)
            if self.tty:
                self._bar_phase(current)
        current.done, current.total, current.t, current.note = done, total, now, note
        current.finished = total is not None and done >= total
        if self.tty:
            self._bar_update(current)
        elif self._due(current, now):
            current.printed_t = now
            print(plain_line(self.label, current), file=self.stream, flush=True)

    def _due(self, phase: _Phase, now: float) -> bool:
        since = phase.printed_t if phase.printed_t is not None else phase.start_t
        if phase.finished:
            return phase.printed_t is not None or now - phase.start_t >= min(self.interval_s, QUIET_FINAL_S)
        return now - since >= self.interval_s and (phase.printed_t is not None or now > phase.start_t)

    def _end_phase(self) -> None:
        if self.phase is not None and self.tty and self._task is not None:
            self._bar.stop_task(self._task)

    def close(self) -> None:
        self._end_phase()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ terminal (rich)
    def _bar_phase(self, phase: _Phase) -> None:
        if self._bar is None:
            self._bar = _rich_progress(self.stream)
            self._bar.start()
        desc = f"{self.label}{': ' + phase.name if phase.name else ''}"
        self._task = self._bar.add_task(desc, total=phase.total, completed=phase.done, unit=phase.unit, note="")

    def _bar_update(self, phase: _Phase) -> None:
        self._bar.update(self._task, completed=phase.done, total=phase.total,
                         note=f"({phase.note})" if phase.note else "")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _rich_progress(stream: TextIO) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress as RichProgress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(format_rate(task.speed, task.fields.get("unit", "items")), style="progress.data.speed")

    return RichProgress(
        TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.fields[unit]}"), RateColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
        console=Console(file=stream), transient=False,
    )

"""Errors meant for people.

A ``SelfaugError`` is a user's mistake (bad recipe, file, argument, dataset reference): the CLI
prints it without a traceback and exits 2. Anything else that fails during ``selfaug run`` is
a ``StepFailed`` (exit 1). Every message should say where (file:line:column when known), which
field, what was expected, what was found, and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Location:
    """A position in a user's file; line and column are 1-based."""

    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass
class Problem:
    """One thing wrong, with everything needed to explain it."""

    message: str
    location: Location | None = None
    field: str | None = None
    expected: str | None = None
    found: str | None = None
    hint: str | None = None
    severity: str = "error"  # "error" | "warning"

    def render(self) -> str:
        head = f"{self.location}: " if self.location else ""
        where = f"{self.field}: " if self.field else ""
        lines = [f"{head}{self.severity}: {where}{self.message}"]
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.found is not None:
            lines.append(f"  found:    {self.found}")
        if self.hint:
            lines.append(f"  hint:     {self.hint}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        loc = self.location or Location()
        return {
            "severity": self.severity,
            "file": loc.file,
            "line": loc.line,
            "column": loc.column,
            "field": self.field,
            "message": self.message,
            "expected": self.expected,
            "found": self.found,
            "hint": self.hint,
        }


class SelfaugError(Exception):
    """A user's mistake. Holds one or more problems; the CLI exits 2 on it."""

    exit_code = 2

    def __init__(
        self,
        message: str | None = None,
        *,
        problems: list[Problem] | None = None,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        expected: str | None = None,
        found: str | None = None,
        hint: str | None = None,
    ) -> None:
        if problems is None:
            location = Location(file, line, column) if (file or line) else None
            problems = [
                Problem(
                    message or "invalid input",
                    location=location,
                    field=field,
                    expected=expected,
                    found=found,
                    hint=hint,
                )
            ]
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(p.render() for p in self.problems)


class StepFailed(Exception):
    """A plan step failed at run time (exit 1). The store is left consistent and the run resumable."""

    exit_code = 1

    def __init__(self, step: str, message: str, hint: str | None = None) -> None:
        self.step = step
        self.hint = hint
        text = f"step {step} failed: {message}"
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)

"""Opening the DuckDB file: path resolution and the one-writer lock.

DuckDB lets one process hold a file open for writing (readers take a shared lock that also
conflicts with a writer). A second process gets an ``IOException`` "Could not set lock ...
(PID n)": we retry until ``wait_s`` has passed, then raise a ``SelfaugError`` naming the pid.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.store.faults import reraise_as_fault

DEFAULT_STORE = ".selfaug/store.duckdb"
DEFAULT_WAIT_S = 5.0
_PID = re.compile(r"PID (\d+)")


def resolve_store_path(path: str | os.PathLike | None = None, recipe_store_path: str | None = None) -> Path:
    """Explicit path (the CLI's --store) > $SELFAUG_STORE > the recipe's store.path > default."""
    for candidate in (path, os.environ.get("SELFAUG_STORE"), recipe_store_path):
        if candidate:
            return Path(candidate).expanduser()
    return Path(DEFAULT_STORE)


def default_wait_s() -> float:
    raw = os.environ.get("SELFAUG_STORE_WAIT")
    if not raw:
        return DEFAULT_WAIT_S
    try:
        return max(0.0, float(raw))
    except ValueError as exc:
        raise SelfaugError("SELFAUG_STORE_WAIT must be a number of seconds", found=raw) from exc


def _is_lock_error(exc: Exception) -> bool:
    return "lock" in str(exc).lower() and "conflicting" in str(exc).lower()


def connect(path: Path, *, read_only: bool, wait_s: float):
    """A DuckDB connection to ``path``, waiting up to ``wait_s`` for another process's lock."""
    import duckdb

    if read_only and not path.exists():
        from selfaug_compiler.cli.store_note import other_stores  # standard library only

        others = other_stores(path)
        raise SelfaugError(
            f"no store at {path}", hint="import data first (selfaug data import) or pass --store PATH"
            + (f"; other stores next to it: {others}" if others else ""))
    if path.is_dir():
        raise SelfaugError(f"the store path {path} is a folder, not a store file",
                           hint=f"pass the file inside it, e.g. --store {path / 'store.duckdb'}")
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reraise_as_fault(exc, path)
            raise SelfaugError(f"cannot create the store folder {path.parent}: {exc.strerror}",
                               hint="pass --store PATH in a folder you can write") from exc
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if not _is_lock_error(exc):
                reraise_as_fault(exc, path)
                raise SelfaugError(f"cannot open store {path}: {str(exc).splitlines()[0]}") from exc
            if time.monotonic() >= deadline:
                pid = _PID.search(str(exc))
                who = f"pid {pid.group(1)}" if pid else "unknown pid"
                command = holder_command(int(pid.group(1))) if pid else None
                if command:
                    who += f": {command}"
                raise SelfaugError(
                    f"store {path} is in use by another process ({who})",
                    hint="DuckDB lets one process open a store at a time, readers included; a run opens it only "
                         "to read inputs and to commit (seconds at a time), a data command while it runs: retry, or set "
                         f"SELFAUG_STORE_WAIT to the seconds to wait (waited {wait_s:g} s)",
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def holder_command(pid: int) -> str | None:
    """The command line of process ``pid`` (Linux /proc; None elsewhere or when it is gone),
    shortened to the program's name and its arguments: ``selfaug study run studies/demo.yaml``."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return None
    words = [w for w in words if w]
    while len(words) > 1 and Path(words[0]).name.startswith("python"):
        words = words[1:]
    if not words:
        return None
    if words[0] == "-c":  # inline code says nothing useful
        return "python -c …"
    return " ".join(" ".join([Path(words[0]).name, *words[1:]]).split())[:200]

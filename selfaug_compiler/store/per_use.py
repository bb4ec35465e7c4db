"""What a running step holds of its store: nothing between calls.

DuckDB lets one process open a file at a time (readers take a lock too), and a step's model work
(generation, training, evaluation) lasts minutes. So the runner gives each step a
``PerUseStore``: every call opens the store, runs one ``Store`` method (each write is one
transaction, as before) and closes it again. Between calls — during all model work — other
processes (``selfaug data ls`` in a second terminal, ``selfaug compare``) open the store; a
reader that arrives during a commit waits for that commit only (``$SELFAUG_STORE_WAIT``).

Two runs on one store would now interleave their writes (two processes generating the same step
would stage the same rows twice), so a run holds ``run_lock`` for its whole length: an advisory
lock on ``STORE.run-lock`` (``flock``: released by the kernel when the process dies, even by
SIGKILL). A second ``selfaug run`` on the same store is refused with the first run's pid and
command; readers never take it.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.store.core import Store, open_store
from selfaug_compiler.store.lock import default_wait_s, holder_command

# How long a running step's call waits for a reader or an import that holds the store (they are
# short); a second run does not come in between: it is kept out by ``run_lock``.
CALL_WAIT_S = 120.0
_NOT_PER_CALL = {"close", "transaction", "con"}  # need one connection across calls


def call_wait_s() -> float:
    return max(default_wait_s(), CALL_WAIT_S)


class PerUseStore:
    """The ``Store`` API, each call on its own short-lived connection (see the module doc)."""

    read_only = False

    def __init__(self, path: str | Path, *, wait_s: float | None = None) -> None:
        self.path = Path(path)
        self.wait_s = call_wait_s() if wait_s is None else wait_s

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or name in _NOT_PER_CALL or not callable(getattr(Store, name, None)):
            raise AttributeError(f"{type(self).__name__} has no per-call method {name!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            with open_store(self.path, wait_s=self.wait_s) as store:
                return getattr(store, name)(*args, **kwargs)

        call.__name__ = name
        return call

    def close(self) -> None:
        """Nothing is held between calls (a sharded generate step calls this before its model work)."""


def run_lock_path(store_path: Path) -> Path:
    return Path(store_path).with_name(Path(store_path).name + ".run-lock")


@contextmanager
def run_lock(store_path: Path, *, wait_s: float | None = None) -> Iterator[None]:
    """Hold the store's run lock for the block; another run's holding it is a ``SelfaugError``
    naming its pid and command after ``wait_s`` (default ``$SELFAUG_STORE_WAIT``, 5 s)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no run lock (DuckDB's own lock still guards each call)
        yield
        return
    wait = default_wait_s() if wait_s is None else wait_s
    path = run_lock_path(store_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only folder: opening the store says so, in its own words
        yield
        return
    try:
        if _lock(fcntl, fd, store_path, wait):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiting run)


def _lock(fcntl: Any, fd: int, store_path: Path, wait: float) -> bool:
    """Take the lock, waiting up to ``wait`` s; False where the file system has no flock (some
    network file systems): the run then goes on unlocked, as before the run lock existed."""
    deadline, delay = time.monotonic() + wait, 0.05
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise _held_by_a_run(store_path, fd, wait) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        except OSError:  # ENOLCK, EOPNOTSUPP
            return False


def _held_by_a_run(store_path: Path, fd: int, waited: float) -> SelfaugError:
    raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    who = "unknown pid"
    if raw.isdigit():
        command = holder_command(int(raw))
        who = f"pid {raw}" + (f": {command}" if command else "")
    return SelfaugError(
        f"store {store_path} is in use by another run ({who})",
        hint="one run at a time writes a store (reading it works meanwhile: selfaug data ls --store "
             f"{store_path}); wait for that run, pass another --store, or set SELFAUG_STORE_WAIT to the "
             f"seconds to wait (waited {waited:g} s)",
    )

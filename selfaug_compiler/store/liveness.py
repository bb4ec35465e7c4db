"""Whether the process that started a run still runs: pid + host + the process's start time.

A run records its owner when it starts (``runs.pid``, ``host``, ``proc_start``). A run killed
with SIGKILL never records its end; the next run (and ``selfaug data verify``) sees that its
owner is gone on this host (no such pid, a zombie, or the pid now belongs to a process started
at another time, e.g. after a reboot) and records it as ``dead``. Runs owned by another host are
left alone: their processes cannot be seen from here.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def host() -> str:
    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """An identity of the process's start (boot id + start tick on Linux, create time elsewhere),
    or None when it cannot be told."""
    stat = _linux_stat(pid)
    if stat is not None:
        return stat[1]
    try:
        import psutil

        return f"psutil:{psutil.Process(pid).create_time():.3f}"
    except Exception:  # noqa: BLE001 - no psutil, no such process, no permission
        return None


def owner() -> tuple[int, str, str | None]:
    """(pid, host, start) of this process, as a run records it."""
    pid = os.getpid()
    return pid, host(), process_start(pid)


def is_gone(pid: int | None, run_host: str | None, start: str | None) -> bool:
    """Whether the recorded owner of a run is certainly not running any more."""
    if pid is None or run_host != host():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, owned by another user
        pass
    stat = _linux_stat(pid)
    if stat is not None and stat[0] == "Z":  # killed, not yet reaped by its parent
        return True
    current = process_start(pid)
    return start is not None and current is not None and current != start


def _linux_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, boot id:start tick) from /proc, or None where /proc is not there."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3, starttime 22
    return fields[0], f"{boot}:{fields[19]}"

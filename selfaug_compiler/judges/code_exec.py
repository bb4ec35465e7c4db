"""Run untrusted model-written code against tests, in a separate, limited process.

Layers of protection (each one independent of the others):

- a child process ``sys.executable -I`` (isolated mode: no user site, no PYTHON* variables) in
  its own session, started in a throw-away temporary working directory with a scrubbed
  environment (HOME and TMPDIR point into that directory);
- ``resource.setrlimit`` in the child before exec: address space (``memory_mb``), CPU seconds,
  process count (fork bombs), file size and open files;
- a wall-clock timeout that kills the whole process group (``os.killpg``);
- when unprivileged user namespaces work here (checked once, ``unshare --user --map-root-user``),
  the child also gets its own network namespace (no interface but a downed loopback: no
  network at all), PID namespace (everything dies with its init) and mount namespace in which
  every mount but the working directory is remounted read-only (writes outside fail).

RLIMIT_NPROC is not enforced for root (the kernel exempts uid 0 of the host even inside a user
namespace), so when selfaug runs as root the child is also put into a fresh ``pids`` cgroup with
``pids.max = MAX_PROCESSES`` when one can be created (``/sys/fs/cgroup/pids`` or a cgroup v2
``pids`` controller); the cgroup is removed afterwards.

Without user namespaces the network block and the write block are **best-effort**: a preamble
replaces ``socket.socket`` and friends inside the child, which code that imports ``_socket``
directly can get around, and writes are only confined by HOME/TMPDIR pointing into the
working directory. As root without a pids cgroup, a fork bomb is only stopped by the CPU limit and the timeout.
``sandbox_mode()`` says which mode is in use.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

OUTPUT_LIMIT = 64 * 1024
MAX_PROCESSES = 16
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_OPEN_FILES = 64

# Run by the namespace wrapper: bind the work dir onto itself, then remount every other mount
# read-only, then exec the program.
_NS_WRAPPER = r"""
D="$1"; shift
mount --bind "$D" "$D" || exit 97
awk '{print $5}' /proc/self/mountinfo | while read -r m; do
  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev/pts|"$D") ;; *) mount -o remount,bind,ro "$m" 2>/dev/null ;; esac
done
cd "$D" && exec "$@"
"""

# Used only without namespaces: best-effort network block inside the child.
_SOCKET_BLOCK = '''
import socket as _s
def _blocked(*a, **k):
    raise OSError("network access is disabled in the selfaug sandbox")
class _NoSocket:
    def __init__(self, *a, **k): _blocked()
_s.socket = _NoSocket
_s.create_connection = _blocked
_s.socketpair = _blocked
del _s
'''


@dataclass
class ExecResult:
    passed: bool
    reason: str
    stdout: str
    stderr: str
    seconds: float


@functools.lru_cache(maxsize=1)
def namespaces_available() -> bool:
    """True when ``unshare`` can give us user, network, mount and PID namespaces here."""
    exe = shutil.which("unshare")
    if exe is None:
        return False
    try:
        probe = subprocess.run([exe, "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork",
                                "sh", "-c", "mount -o remount,bind,ro / && true"],
                               capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def process_limit_enforced() -> bool:
    """Whether the kernel caps the child's process count (RLIMIT_NPROC as non-root, or a pids cgroup)."""
    return os.geteuid() != 0 or _cgroup_parent() is not None


def sandbox_mode() -> str:
    return "namespaces" if namespaces_available() else "rlimits-only (best-effort network/write block)"


def _cgroup_parent() -> Path | None:
    """A pids cgroup folder we may create children in (root only), or None."""
    if os.geteuid() != 0:
        return None
    for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if (base / "cgroup.procs").is_file() and os.access(base, os.W_OK):
            if base.name == "pids" or "pids" in _read(base / "cgroup.subtree_control"):
                return base
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class PidsCgroup:
    """A throw-away pids cgroup capping the child's process count (used when running as root)."""

    def __init__(self, max_pids: int) -> None:
        self.path: Path | None = None
        parent = _cgroup_parent()
        if parent is None:
            return
        path = parent / f"selfaug-exec-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(max_pids))
            self.path = path
        except OSError:
            if path.is_dir():
                self.remove()

    def enter(self) -> None:
        """Called in the child before exec: move this process into the cgroup."""
        if self.path is not None:
            with open(self.path / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    def remove(self) -> None:
        path, self.path = self.path, None
        if path is None:
            return
        for _ in range(50):  # the killed processes leave the cgroup within moments
            try:
                path.rmdir()
                return
            except OSError:
                for pid in _read(path / "cgroup.procs").split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                time.sleep(0.02)


def build_program(code: str, tests: list[str], setup: str, *, block_sockets: bool) -> str:
    parts = [_SOCKET_BLOCK] if block_sockets else []
    parts += [setup, code, *tests]
    return "\n\n".join(p for p in parts if p)


def _limits(timeout_s: float, memory_mb: int, cgroup: PidsCgroup):
    cpu = max(1, int(timeout_s + 1))

    def apply() -> None:
        import resource

        cgroup.enter()
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
        resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_OPEN_FILES, MAX_OPEN_FILES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _command(workdir: Path, use_ns: bool) -> list[str]:
    python = [sys.executable, "-I", "-B", "program.py"]
    if not use_ns:
        return python
    return ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child",
            "sh", "-c", _NS_WRAPPER, "sandbox", str(workdir), *python]


def _read_capped(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(OUTPUT_LIMIT).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _reason(returncode: int, stderr: str, timed_out: bool) -> str:
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "passed"
    if returncode < 0:
        sig = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        return "cpu time limit" if sig == "SIGXCPU" else f"killed by {sig}"
    if returncode == 97:
        return "sandbox setup failed"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit code {returncode}"
    if "MemoryError" in last:
        return "memory limit"
    return "error: " + last[:200]


def run_tests(code: str, tests: list[str], *, timeout_s: float = 5.0, memory_mb: int = 512,
              setup: str = "") -> ExecResult:
    """Run ``setup``, ``code`` then each test statement (``assert f(1) == 2``) in the sandbox.

    Passes when the program exits 0. Never raises for anything the code does.
    """
    use_ns = namespaces_available()
    workdir = Path(tempfile.mkdtemp(prefix="selfaug-exec-"))
    start = time.perf_counter()
    cgroup = PidsCgroup(MAX_PROCESSES)
    try:
        (workdir / "program.py").write_text(build_program(code, tests, setup, block_sockets=not use_ns))
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
        with open(workdir / ".stdout", "wb") as out, open(workdir / ".stderr", "wb") as err:
            proc = subprocess.Popen(_command(workdir, use_ns), cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True,
                                    preexec_fn=_limits(timeout_s, memory_mb, cgroup), close_fds=True)
            timed_out = False
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc)  # also reaps anything the program left running
        stdout, stderr = _read_capped(workdir / ".stdout"), _read_capped(workdir / ".stderr")
        reason = _reason(proc.returncode, stderr, timed_out)
        return ExecResult(reason == "passed", reason, stdout, stderr, time.perf_counter() - start)
    finally:
        cgroup.remove()
        shutil.rmtree(workdir, ignore_errors=True)

"""The jail the code-execution judge runs untrusted programs in: bubblewrap (``bwrap``).

The program sees a root of its own, built from nothing: the interpreter binary, its standard
library (its ``site-packages`` hidden under an empty tmpfs), the shared libraries those load
(found with ``ldd``), a minimal ``/dev``, its own ``/proc`` (a PID namespace: no host process is
visible), a 64 MB tmpfs at ``/tmp`` and one at ``/sandbox`` (its working directory), and the
judge's job folder read-only at ``/judge``. No host ``/etc``, ``/root``, home or project file
exists in there; everything but the two tmpfs is read-only. It runs as uid 65534 with no
capabilities, in new user, PID, network (loopback only), IPC, UTS and cgroup namespaces, and
dies with its parent.

Without a working ``bwrap`` the judge refuses to run code (``SandboxUnavailable``, a
``SelfaugError``): ``make setup`` installs the ``bubblewrap`` Debian package when it runs as
root; otherwise install it with your package manager.

RLIMIT_NPROC is not enforced for root (the kernel exempts the host's uid 0 even inside a user
namespace), so when selfaug runs as root the child is also put into a fresh ``pids`` cgroup with
``pids.max`` set (``PidsCgroup``) when one can be created; it is removed afterwards.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path

from selfaug_compiler.errors import SelfaugError

TMPFS_BYTES = 64 * 1024 * 1024
WORKDIR = "/sandbox"
JOBDIR = "/judge"
SANDBOX_UID = 65534


class SandboxUnavailable(SelfaugError):
    """The code judge cannot confine programs here, so it runs none."""


def interpreter() -> str:
    """The real interpreter binary (a virtualenv's ``python`` is a link to it)."""
    return os.path.realpath(sys.executable)


@functools.lru_cache(maxsize=1)
def root_binds() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(paths to bind read-only at the same place, folders to hide under an empty tmpfs)."""
    # the base interpreter's folders, not a virtualenv's (whose lib/ holds its site-packages)
    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix,
                                      "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix})
    stdlib = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib") if os.path.isdir(paths[k])}
    exe = interpreter()
    objects = [exe]
    for folder in stdlib:
        dynload = Path(folder) / "lib-dynload"
        if dynload.is_dir():
            objects += sorted(str(p) for p in dynload.glob("*.so"))
    libs: set[str] = set()
    if shutil.which("ldd"):
        out = subprocess.run(["ldd", *objects], capture_output=True, text=True, timeout=60).stdout
        for m in re.finditer(r"(?:=>\s*)?(/\S+)\s+\(0x", out):
            libs.add(m.group(1))
    binds = {exe, *stdlib, *libs}
    binds = {p for p in binds if not any(p != d and p.startswith(d + "/") for d in stdlib)}
    hidden = set()
    for key in ("purelib", "platlib"):
        site = os.path.realpath(paths[key])
        if any(site.startswith(d + "/") for d in stdlib) and os.path.isdir(site):
            hidden.add(site)
    return tuple(sorted(binds)), tuple(sorted(hidden))


def bwrap_command(jobdir: Path, argv: list[str]) -> list[str]:
    """The ``bwrap`` command running ``argv`` in the jail, with ``jobdir`` read-only at /judge."""
    binds, hidden = root_binds()
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session",
           "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL",
           "--hostname", "sandbox"]
    for path in binds:
        cmd += ["--ro-bind", path, path]
    for path in hidden:
        cmd += ["--tmpfs", path]
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp",
            "--size", str(TMPFS_BYTES), "--tmpfs", WORKDIR,
            "--ro-bind", str(jobdir), JOBDIR,
            "--remount-ro", "/",
            "--chdir", WORKDIR, "--clearenv",
            "--setenv", "HOME", WORKDIR, "--setenv", "TMPDIR", "/tmp",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PATH", "/usr/bin:/bin", "--", *argv]
    return cmd


@functools.lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """None when the jail works here, else why not (checked once per process)."""
    if shutil.which("bwrap") is None:
        return "the `bwrap` program (bubblewrap) is not installed"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="selfaug-probe-") as tmp:
        try:
            probe = subprocess.run(bwrap_command(Path(tmp), [interpreter(), "-I", "-c", "print('ok')"]),
                                   capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bwrap could not start: {e}"
    if probe.returncode != 0 or probe.stdout.strip() != "ok":
        return f"bwrap failed (exit {probe.returncode}): {probe.stderr.strip()[-300:]}"
    return None


def require_sandbox() -> None:
    problem = sandbox_problem()
    if problem is not None:
        raise SandboxUnavailable(
            "the code-execution judge refuses to run model-written code without its sandbox: " + problem,
            expected="bubblewrap (`bwrap`) able to create user, PID, network and mount namespaces",
            hint="run `make setup` as root (it installs the Debian package `bubblewrap`), or "
                 "`apt-get install bubblewrap`; in a container, allow unprivileged user namespaces "
                 "(e.g. docker --security-opt seccomp=unconfined)")


def sandbox_mode() -> str:
    return "bubblewrap" if sandbox_problem() is None else "unavailable"


def _cgroup_parent() -> Path | None:
    """A pids cgroup folder we may create children in (root only), or None."""
    if os.geteuid() != 0:
        return None
    for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if (base / "cgroup.procs").is_file() and os.access(base, os.W_OK):
            if base.name == "pids" or "pids" in _read(base / "cgroup.subtree_control"):
                return base
    return None


def process_limit_enforced() -> bool:
    """Whether the kernel caps the child's process count (RLIMIT_NPROC as non-root, or a pids cgroup)."""
    return os.geteuid() != 0 or _cgroup_parent() is not None


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

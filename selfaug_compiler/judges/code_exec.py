"""Run untrusted model-written code against tests, in a separate, jailed and limited process.

Layers of protection (each one independent of the others):

- the jail (``judges/sandbox.py``, bubblewrap): a root of its own with only the interpreter and
  its standard library (no host ``/etc``, ``/root``, home or project files; nothing writable but
  two small tmpfs), its own ``/proc`` and PID namespace (host processes are invisible; everything
  dies with it), no network, uid 65534 without capabilities. Without a working ``bwrap`` the judge
  refuses to run anything: ``run_tests`` raises ``SandboxUnavailable`` (a ``SelfaugError``);
- ``resource.setrlimit`` before exec: address space (``memory_mb``), CPU seconds, process count
  (plus a ``pids`` cgroup when running as root, where RLIMIT_NPROC is not enforced), file size,
  open files, no core dumps;
- a wall-clock timeout that kills the whole process group;
- proof of completion (``judges/exec_harness.py``): the parent hands the harness a random nonce
  through a pipe; the harness rewrites the tests so that every check compares plain built-in
  values itself (an object whose ``__eq__`` is always true decides nothing), runs setup, the
  candidate and the tests, and writes ``{nonce, "passed"}`` to a second pipe only after the last
  test. Without that record the program failed, whatever its exit code: ``sys.exit(0)``,
  ``os._exit(0)``, a signal, closing stdout all fail.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from selfaug_compiler.judges.sandbox import (JOBDIR, PidsCgroup, bwrap_command, interpreter, process_limit_enforced,
                                             require_sandbox, sandbox_mode)

__all__ = ["ExecResult", "run_tests", "sandbox_mode", "process_limit_enforced", "MAX_PROCESSES"]

OUTPUT_LIMIT = 64 * 1024
PROOF_LIMIT = 1024 * 1024
MAX_PROCESSES = 16
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_OPEN_FILES = 64
_HARNESS = Path(__file__).with_name("exec_harness.py")


@dataclass
class ExecResult:
    passed: bool
    reason: str
    stdout: str
    stderr: str
    seconds: float
    checks: int = 0  # asserts the harness evaluated (a pass with 0 means the tests had none)


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


def _read_capped(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(OUTPUT_LIMIT).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _read_pipe(fd: int) -> str:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    chunks, size = [], 0
    while size < PROOF_LIMIT:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _proof(text: str, nonce: str) -> dict | None:
    """The harness's record: the first line carrying our nonce (the program cannot know it)."""
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and secrets.compare_digest(str(record.get("nonce", "")), nonce):
            return record
    return None


def _job_file(folder: Path, job: dict) -> int:
    """A file descriptor of an unlinked file holding ``job`` as JSON, positioned at its start."""
    path = folder / "job.json"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(path)
    with os.fdopen(os.dup(fd), "wb") as f:
        f.write(json.dumps(job).encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _signal_name(num: int) -> str:
    return signal.Signals(num).name if num in signal.valid_signals() else str(num)


def _reason(returncode: int, stderr: str, timed_out: bool, record: dict | None) -> str:
    if record is not None:
        if record.get("status") == "passed":
            return "passed"
        why = str(record.get("reason") or "failed")
        return "memory limit" if why.startswith("MemoryError") else "error: " + why[:300]
    if timed_out:
        return "timeout"
    # bwrap reports a child killed by signal N as exit status 128 + N
    sig = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if sig:
        name = _signal_name(sig)
        return "cpu time limit" if name == "SIGXCPU" else f"killed by {name} before the tests finished"
    if returncode == 0:
        return "exited before the tests finished (exit code 0, no proof from the harness)"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit code {returncode}"
    if "MemoryError" in last:
        return "memory limit"
    return f"exited before the tests finished (exit code {returncode}): {last[:200]}"


def run_tests(code: str, tests: list[str], *, timeout_s: float = 5.0, memory_mb: int = 512,
              setup: str = "") -> ExecResult:
    """Run ``setup``, ``code`` then each test block (``assert f(1) == 2``, or a HumanEval
    ``check`` function and its call) in the sandbox.

    Passes only on the harness's proof that the last test finished with every check true.
    Never raises for anything the code does; raises ``SandboxUnavailable`` when there is no jail.
    """
    require_sandbox()
    host = Path(tempfile.mkdtemp(prefix="selfaug-exec-"))
    start = time.perf_counter()
    cgroup = PidsCgroup(MAX_PROCESSES)
    fds: list[int] = []
    try:
        job = host / "job"
        job.mkdir()
        shutil.copyfile(_HARNESS, job / "harness.py")
        nonce = secrets.token_hex(32)
        # the job goes in through a file descriptor, not the jail's file system
        job_fd = _job_file(host, {"nonce": nonce, "setup": setup, "code": code, "tests": list(tests)})
        fds.append(job_fd)
        proof_r, proof_w = os.pipe()
        fds += [proof_r, proof_w]
        argv = [interpreter(), "-I", "-B", f"{JOBDIR}/harness.py", str(job_fd), str(proof_w)]
        with open(host / "stdout", "wb") as out, open(host / "stderr", "wb") as err:
            proc = subprocess.Popen(bwrap_command(job, argv), cwd=host, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True, pass_fds=(job_fd, proof_w),
                                    preexec_fn=_limits(timeout_s, memory_mb, cgroup))
            for fd in (job_fd, proof_w):
                os.close(fd)
                fds.remove(fd)
            timed_out = False
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc)  # bwrap's PID namespace takes everything the program started with it
        record = _proof(_read_pipe(proof_r), nonce)
        stdout, stderr = _read_capped(host / "stdout"), _read_capped(host / "stderr")
        reason = _reason(proc.returncode, stderr, timed_out, record)
        checks = int(record.get("checks") or 0) if record else 0
        return ExecResult(reason == "passed", reason, stdout, stderr, time.perf_counter() - start, checks)
    finally:
        for fd in fds:
            os.close(fd)
        cgroup.remove()
        shutil.rmtree(host, ignore_errors=True)

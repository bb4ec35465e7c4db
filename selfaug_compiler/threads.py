"""How many threads torch may use in each process (torch-free until ``apply_torch_threads``).

torch sizes its pool from the machine's cores, not from what this process may use: with other
work on the CPU (or a CPU affinity narrower than the machine), its spinning threads oversubscribe
the cores and a generation can make no progress for minutes. selfaug therefore sets the pool
itself, per process, first match wins:

1. ``$SELFAUG_TORCH_THREADS`` (a positive integer);
2. the recipe's ``execution.torch_threads`` (a speed field: it never enters a step id);
3. ``$OMP_NUM_THREADS`` when set to a positive integer (the standard variable, honoured as set);
4. the CPUs this process may run on (``os.sched_getaffinity``) divided by the processes the step
   starts (``execution.num_processes`` for training workers), at least 1.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

from selfaug_compiler.errors import SelfaugError

ENV_VAR = "SELFAUG_TORCH_THREADS"
_applied: list[int] = []  # the count this process last gave torch (empty: not yet)
# the user's own OMP_NUM_THREADS, before apply_torch_threads sets it for torch's runtime
_USER_OMP = os.environ.get("OMP_NUM_THREADS", "")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


def _positive(text: str, name: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise SelfaugError(f"{name} must be a positive whole number of threads", field=name,
                           expected="an integer >= 1, e.g. 1 on a machine shared with other work",
                           found=repr(text), hint=f"unset {name} to size the pool from the CPU affinity")
    return value


def torch_threads(setting: int | None = None, processes: int = 1, *, cpus: int | None = None,
                  env: Mapping[str, str] | None = None) -> int:
    """The thread count for one of ``processes`` processes (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get(ENV_VAR, "").strip():
        return _positive(env[ENV_VAR], ENV_VAR)
    if setting is not None:
        return max(1, int(setting))
    omp = (_USER_OMP if env is os.environ else env.get("OMP_NUM_THREADS", "")).strip()
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    return max(1, (cpus if cpus is not None else available_cpus()) // max(1, processes))


def worker_env(env: Mapping[str, str], setting: int | None, processes: int) -> dict[str, str]:
    """The environment for ``processes`` worker processes: each one's thread count in OMP_NUM_THREADS."""
    out = dict(env)
    out["OMP_NUM_THREADS"] = str(torch_threads(setting, processes, env=env))
    out.pop(ENV_VAR, None)  # the workers' count is the one just computed
    return out


def apply_torch_threads(setting: int | None = None, processes: int = 1) -> int:
    """Give torch its thread count in this process (before or after torch is imported)."""
    n = torch_threads(setting, processes)
    os.environ["OMP_NUM_THREADS"] = str(n)  # read by torch's OpenMP runtime when it loads
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(n)
    _applied[:] = [n]
    return n


def ensure_torch_threads() -> int:
    """Apply the default (env or affinity) unless a step already applied its setting here."""
    return _applied[0] if _applied else apply_torch_threads()

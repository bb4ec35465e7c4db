"""torch's thread pool: sized from the CPU affinity and the step's process count, or set (issue 10.5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfaug_compiler.compile.planner import build_plan
from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.recipe.loader import load_recipe
from selfaug_compiler.threads import ENV_VAR, available_cpus, torch_threads, worker_env

RECIPES = Path(__file__).parents[1] / "recipes"


@pytest.mark.parametrize("cpus,processes,expected", [(8, 1, 8), (8, 2, 4), (8, 3, 2), (2, 4, 1), (1, 1, 1), (64, 8, 8)])
def test_default_is_the_affinity_shared_by_the_processes(cpus, processes, expected):
    assert torch_threads(None, processes, cpus=cpus, env={}) == expected


def test_precedence_env_then_recipe_then_omp_then_affinity():
    assert torch_threads(3, 2, cpus=8, env={ENV_VAR: "5", "OMP_NUM_THREADS": "7"}) == 5
    assert torch_threads(3, 2, cpus=8, env={"OMP_NUM_THREADS": "7"}) == 3
    assert torch_threads(None, 2, cpus=8, env={"OMP_NUM_THREADS": "7"}) == 7
    assert torch_threads(None, 2, cpus=8, env={"OMP_NUM_THREADS": "junk", ENV_VAR: " "}) == 4


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_a_bad_env_value_is_a_clear_error(bad):
    with pytest.raises(SelfaugError, match=ENV_VAR):
        torch_threads(None, 1, env={ENV_VAR: bad})


def test_available_cpus_follow_the_affinity_mask():
    assert available_cpus() == len(os.sched_getaffinity(0))


def test_workers_get_their_share_in_omp_num_threads():
    env = worker_env({ENV_VAR: "3", "PATH": "/bin"}, None, 2)
    assert env["OMP_NUM_THREADS"] == "3" and ENV_VAR not in env and env["PATH"] == "/bin"
    assert worker_env({}, 2, 4)["OMP_NUM_THREADS"] == "2"
    assert worker_env({}, None, 2)["OMP_NUM_THREADS"] == str(max(1, available_cpus() // 2))


_PROBE = """
import os, sys
from selfaug_compiler.threads import apply_torch_threads, ensure_torch_threads
setting = None if sys.argv[1] == "-" else int(sys.argv[1])
one_cpu = {min(os.sched_getaffinity(0))}
if sys.argv[2] == "before":
    os.sched_setaffinity(0, one_cpu)
    n = apply_torch_threads(setting)
    import torch
else:  # torch sized its pool for every CPU; then the process is narrowed to one
    import torch
    os.sched_setaffinity(0, one_cpu)
    n = apply_torch_threads(setting)
assert ensure_torch_threads() == n
print(n, torch.get_num_threads())
"""


@pytest.mark.parametrize("setting,when,expected", [("-", "before", 1), ("-", "after", 1), ("3", "after", 3),
                                                    ("2", "before", 2)])
def test_the_count_reaches_torch(setting, when, expected):
    """A process pinned to one CPU gets one thread, also when torch was imported before the
    affinity changed (torch alone would keep its pool for every CPU); a setting wins."""
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", _PROBE, setting, when], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout.split()
    assert out == [str(expected), str(expected)]


def test_torch_threads_is_a_speed_field_that_reaches_the_steps():
    plain = build_plan(load_recipe(RECIPES / "s3ft.yaml"), RECIPES.parent / "out")
    pinned = build_plan(load_recipe(RECIPES / "s3ft.yaml", ["execution.torch_threads=1"]), RECIPES.parent / "out")
    assert {s.name: s.id for s in plain.steps} == {s.name: s.id for s in pinned.steps}
    for kind in ("generate", "judge", "train", "evaluate"):
        steps = [s for s in pinned.steps if s.kind == kind]
        assert steps and all(s.speed.get("torch_threads") == 1 for s in steps), kind
    assert all("torch_threads" not in s.speed for s in plain.steps)
    with pytest.raises(SelfaugError):
        load_recipe(RECIPES / "s3ft.yaml", ["execution.torch_threads=0"])

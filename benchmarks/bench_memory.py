"""validate's training-memory estimate vs the measured peak RSS, on CPU, for full, LoRA and freeze.

Each method trains the embedded default (packaged SmolLM2-135M-Instruct, GSM8K rows, the train and
execution settings of recipes/default.yaml, lora.yaml and freeze.yaml) for a few optimizer steps
in its own subprocess (AdamW's moments exist from the first step on, so the peak is reached), and
reports its peak RSS (``ru_maxrss``: everything resident, the model file pages included). The
estimate is the training memory ``selfaug validate`` prints for the same recipe on this machine
(``compile/train_memory.py``; sequence length as validate takes it: ``max_length`` when packed,
else twice the mean example). Aim: within +-35%.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_memory.py [--steps 3] [--methods full,lora,freeze]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"full": "default.yaml", "lora": "lora.yaml", "freeze": "freeze.yaml"}
GIB = 1024**3


def estimate(method: str) -> dict:
    """What ``selfaug validate`` prints for the recipe on this machine (its budget's memory)."""
    from selfaug_compiler.compile.checks import check_recipe
    from selfaug_compiler.recipe.loader import load_recipe

    memory = check_recipe(load_recipe(ROOT / "recipes" / RECIPES[method])).budget["memory"]
    return {"dtype": memory["dtype"], "parts_gib": memory["train_parts_gib"], "gib": memory["train_gib"]}


def child(method: str, steps: int, out: str) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_train import gsm8k_rows

    from selfaug_compiler.models.loading import model_folder
    from selfaug_compiler.recipe.loader import load_recipe
    from selfaug_compiler.train.launch import train_model

    recipe = load_recipe(ROOT / "recipes" / RECIPES[method]).recipe
    train = recipe.train.model_copy(update={"save_every_steps": 10_000})
    folder = model_folder(recipe.model.ref)[1]  # the HF folder the parent converted, nothing loaded here
    imports_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows = gsm8k_rows(train.batch_size * (steps + 1))
    outcome = train_model(str(folder), rows, train, out, seed=0, micro_batch_size=recipe.execution.micro_batch_size,
                          device="cpu", dtype=recipe.model.dtype, max_steps=steps, show_progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_gib": peak / GIB, "imports_gib": imports_rss / GIB,
                      "steps": (outcome.metrics or {}).get("steps_done", steps)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--methods", default="full,lora,freeze")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.out)
        return
    from selfaug_compiler.models.loading import load_model

    load_model("packaged:smollm2-135m-instruct", dtype="float32", device="cpu")  # GGUF -> HF folder, once
    results = {}
    print(f"{'method':8s} {'estimate GiB':>12s} {'measured GiB':>12s} {'est/meas':>8s}  estimate parts (GiB)")
    for method in args.methods.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            run = subprocess.run([sys.executable, __file__, "--child", method, "--steps", str(args.steps), "--out", tmp],
                                 capture_output=True, text=True, check=True)
        measured = json.loads(run.stdout.strip().splitlines()[-1])
        est = estimate(method)
        ratio = est["gib"] / measured["peak_gib"]
        results[method] = {"estimate_gib": round(est["gib"], 3), "measured_gib": round(measured["peak_gib"], 3),
                           "ratio": round(ratio, 3), "dtype": est["dtype"], "parts_gib": est["parts_gib"]}
        print(f"{method:8s} {est['gib']:12.2f} {measured['peak_gib']:12.2f} {ratio:8.2f}  {est['parts_gib']} ({est['dtype']})",
              flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""Cost of an lm-eval task run through selfaug vs the `lm_eval` CLI, on the same task and model.

`selfaug eval MODEL -b lm_eval:selfaug_arc_easy --limit N --no-cache` against
`lm_eval --model hf --tasks selfaug_arc_easy --include_path <shipped YAMLs> --samples <the same
docs>`, both as fresh processes (imports, model load, task load and scoring all counted), fp32 on
CPU, the packaged SmolLM2-135M-Instruct converted folder. The two commands alternate which goes
first each round, so load on a shared machine hits both alike; the median and the spread
(min–max) of each are printed, with the ratio of medians (the target: selfaug ≤ 1.10 × the CLI).
Per-item acc of the two runs is compared from selfaug's result cache and the CLI's samples file.

    .venv/bin/python benchmarks/bench_lm_eval.py [--items 100] [--rounds 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = "selfaug_arc_easy"


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from selfaug_compiler.evaluate.core import LazyModel
    from selfaug_compiler.evaluate.lm_eval_spec import SHIPPED
    from selfaug_compiler.evaluate.registry import load_benchmark
    from selfaug_compiler.models.cache import converted_packaged_model
    from selfaug_compiler.store import open_store

    folder = converted_packaged_model("smollm2-135m-instruct")
    bench = load_benchmark(f"lm_eval:{TASK}", limit=args.items, seed=0)
    samples = {TASK: sorted(i.doc_id for i in bench.items)}
    bin_dir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="bench_lm_eval_"))
    store = work / "store.duckdb"
    ours = [str(bin_dir / "selfaug"), "eval", str(folder), "-b", f"lm_eval:{TASK}", "--limit", str(args.items),
            "--dtype", "float32", "--device", "cpu", "--batch-size", str(args.batch_size), "--format", "json",
            "--store", str(store)]
    theirs = [str(bin_dir / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={folder},dtype=float32",
              "--device", "cpu", "--batch_size", str(args.batch_size), "--tasks", TASK, "--include_path", str(SHIPPED),
              "--samples", json.dumps(samples), "--log_samples", "--output_path", str(work / "lm_eval_out")]
    print(f"{TASK}: {len(bench.items)} items; model {folder.name}; fp32; batch size {args.batch_size}; "
          f"{args.rounds} rounds, alternating order")
    times: dict[str, list[float]] = {"selfaug eval": [], "lm_eval CLI": []}
    for r in range(args.rounds):
        if store.exists():
            store.unlink()  # every selfaug run scores (no cached result)
        order = [("selfaug eval", ours), ("lm_eval CLI", theirs)]
        for name, cmd in (order if r % 2 == 0 else order[::-1]):
            times[name].append(run(cmd))
            print(f"  round {r + 1}: {name:12s} {times[name][-1]:6.1f} s", flush=True)
    for name, values in times.items():
        print(f"{name:12s}: median {statistics.median(values):6.1f} s  (min {min(values):.1f}, max {max(values):.1f})")
    ratio = statistics.median(times["selfaug eval"]) / statistics.median(times["lm_eval CLI"])
    print(f"selfaug / lm_eval CLI wall time: {ratio:.2f}x (target <= 1.10)")

    with open_store(store, read_only=True) as s:
        hit = s.get_eval(LazyModel(str(folder), dtype="float32", device="cpu").key(), bench.fingerprint)
    mine = {row["doc_id"]: row["acc"] for row in hit[1].to_pylist()} if hit else {}
    (path,) = (work / "lm_eval_out").rglob(f"samples_{TASK}_*.jsonl")
    cli = {s["doc_id"]: float(s["acc"]) for s in map(json.loads, path.read_text().splitlines()) if s}
    print(f"per-item acc identical: {mine == cli} ({len(mine)} items; acc {sum(mine.values()) / max(len(mine), 1):.4f})")


if __name__ == "__main__":
    main()

"""Scoring speed: selfaug's log-likelihood scorer vs lm-evaluation-harness (HFLM) on the same items.

The same ARC-Easy items (default 200, the registry's fixed subset), the same converted model
folder of the embedded default (SmolLM2-135M-Instruct), the same dtype (fp32) and batch size,
in one process. Prints items/s of each, the ratio, and checks that per-item acc and acc_norm
are identical (and the log-likelihoods agree).

    .venv/bin/python benchmarks/bench_eval.py [--items 200] [--batch-size 32] [--benchmark arc_easy]
"""

from __future__ import annotations

import argparse
import time


def run_selfaug(folder, items, batch_size):
    from selfaug_compiler.evaluate.loglik import score_multiple_choice
    from selfaug_compiler.models.loading import load_model

    loaded = load_model(str(folder), dtype="float32", device="cpu")
    score_multiple_choice(loaded, items[:4], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    results = score_multiple_choice(loaded, items, batch_size=batch_size)
    return results, time.perf_counter() - start


def run_lm_eval(folder, items, batch_size):
    import numpy as np
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(folder), dtype="float32", device="cpu", batch_size=batch_size)
    warm = [Instance("loglikelihood", {}, req, 0) for req in items[0].requests]
    lm.loglikelihood(warm, disable_tqdm=True)
    insts = [Instance("loglikelihood", {}, req, i) for item in items for i, req in enumerate(item.requests)]
    start = time.perf_counter()
    scores = lm.loglikelihood(insts, disable_tqdm=True)
    elapsed = time.perf_counter() - start
    out, pos = [], 0
    for item in items:
        lls = np.array([s[0] for s in scores[pos:pos + item.n_choices]])
        pos += item.n_choices
        norm = lls / np.array(item.norm_lengths, dtype=float)
        out.append({"lls": lls.tolist(), "acc": float(np.argmax(lls) == item.gold),
                    "acc_norm": float(np.argmax(norm) == item.gold)})
    return out, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--benchmark", default="arc_easy")
    args = parser.parse_args()

    import torch

    from selfaug_compiler.evaluate.registry import load_benchmark
    from selfaug_compiler.models.cache import converted_packaged_model

    folder = converted_packaged_model("smollm2-135m-instruct")
    bench = load_benchmark(args.benchmark, limit=args.items, seed=0)
    items = bench.items
    n_requests = sum(i.n_choices for i in items)
    print(f"{args.benchmark}: {len(items)} items, {n_requests} requests; model {folder.name}; fp32; "
          f"batch size {args.batch_size}; torch threads {torch.get_num_threads()}")

    ours, t_ours = run_selfaug(folder, items, args.batch_size)
    theirs, t_theirs = run_lm_eval(folder, items, args.batch_size)

    acc_ours = sum(r["acc"] for r in ours) / len(ours)
    accn_ours = sum(r["acc_norm"] for r in ours) / len(ours)
    acc_theirs = sum(r["acc"] for r in theirs) / len(theirs)
    accn_theirs = sum(r["acc_norm"] for r in theirs) / len(theirs)
    same_items = all(a["acc"] == b["acc"] and a["acc_norm"] == b["acc_norm"] for a, b in zip(ours, theirs))
    max_diff = max(abs(x - y) for a, b in zip(ours, theirs) for x, y in zip(a["lls"], b["lls"]))

    print(f"selfaug : {len(items) / t_ours:7.2f} items/s ({t_ours:.1f} s)  acc {acc_ours:.4f}  acc_norm {accn_ours:.4f}")
    print(f"lm_eval : {len(items) / t_theirs:7.2f} items/s ({t_theirs:.1f} s)  acc {acc_theirs:.4f}  acc_norm {accn_theirs:.4f}")
    print(f"speed ratio selfaug/lm_eval: {t_theirs / t_ours:.2f}x")
    print(f"per-item acc and acc_norm identical: {same_items}; max |Δ loglik| = {max_diff:.2e}")
    if not same_items or acc_ours != acc_theirs or accn_ours != accn_theirs:
        raise SystemExit("MISMATCH between selfaug and lm_eval")


if __name__ == "__main__":
    main()

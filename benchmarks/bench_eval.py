"""Scoring speed: selfaug's log-likelihood scorer vs lm-evaluation-harness (HFLM) on the same items.

The same ARC-Easy items (default 200, the registry's fixed subset), the same converted model
folder of the embedded default (SmolLM2-135M-Instruct), the same dtype (fp32) and batch size,
in one process. Prints items/s of each, the ratio, and checks that per-item acc and acc_norm
are identical (and the log-likelihoods agree). Timing interleaves the two scorers in chunks of
items so that a busy shared machine slows both alike.

    .venv/bin/python benchmarks/bench_eval.py [--items 200] [--batch-size 32] [--benchmark arc_easy]
"""

from __future__ import annotations

import argparse
import time


class Selfaug:
    def __init__(self, folder, batch_size):
        from selfaug_compiler.models.loading import load_model

        self.loaded = load_model(str(folder), dtype="float32", device="cpu")
        self.batch_size = batch_size

    def score(self, items):
        from selfaug_compiler.evaluate.loglik import score_multiple_choice

        return score_multiple_choice(self.loaded, items, batch_size=self.batch_size)


class LmEval:
    def __init__(self, folder, batch_size):
        from lm_eval.models.huggingface import HFLM

        self.lm = HFLM(pretrained=str(folder), dtype="float32", device="cpu", batch_size=batch_size)

    def score(self, items):
        import numpy as np
        from lm_eval.api.instance import Instance

        insts = [Instance("loglikelihood", {}, req, i) for item in items for i, req in enumerate(item.requests)]
        scores = self.lm.loglikelihood(insts, disable_tqdm=True)
        out, pos = [], 0
        for item in items:
            lls = np.array([s[0] for s in scores[pos:pos + item.n_choices]])
            pos += item.n_choices
            norm = lls / np.array(item.norm_lengths, dtype=float)
            out.append({"lls": lls.tolist(), "acc": float(np.argmax(lls) == item.gold),
                        "acc_norm": float(np.argmax(norm) == item.gold)})
        return out


def timed_interleaved(scorers, items, chunk):
    """Score the items in chunks, alternating which scorer goes first, so that load changes on a
    shared machine hit both alike. Returns per scorer (results, seconds)."""
    results = {name: [] for name in scorers}
    seconds = {name: 0.0 for name in scorers}
    names = list(scorers)
    for k, start in enumerate(range(0, len(items), chunk)):
        part = items[start:start + chunk]
        for name in (names if k % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            results[name].extend(scorers[name].score(part))
            seconds[name] += time.perf_counter() - t
    return {name: (results[name], seconds[name]) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--benchmark", default="arc_easy")
    parser.add_argument("--chunk", type=int, default=40, help="items per interleaved timing round")
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

    scorers = {"selfaug": Selfaug(folder, args.batch_size), "lm_eval": LmEval(folder, args.batch_size)}
    for scorer in scorers.values():  # warm-up (first-call allocations, lazy inits)
        scorer.score(items[:2])
    timed = timed_interleaved(scorers, items, args.chunk)
    (ours, t_ours), (theirs, t_theirs) = timed["selfaug"], timed["lm_eval"]

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

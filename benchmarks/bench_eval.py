"""Scoring speed: selfaug's log-likelihood scorer vs lm-evaluation-harness (HFLM) on the same items.

The same ARC-Easy items (default 200, the registry's fixed subset), the same converted model
folder of the embedded default (SmolLM2-135M-Instruct, loaded through selfaug's model loading
for selfaug and by HFLM from the same folder for lm_eval), the same dtype (fp32) and batch size,
in one process. Each round scores all items with both scorers, alternating which goes first, so
that a busy shared machine slows both alike; prints items/s per scorer and the per-round ratio
as min / median / max over the rounds, the load average before and after (the machine may be
shared), and whether per-item acc and acc_norm are identical in every round (with the largest
log-likelihood difference).

    .venv/bin/python benchmarks/bench_eval.py [--items 200] [--rounds 3] [--batch-size 32] [--benchmark arc_easy]

On a machine whose cores are busy with other processes, run it with ``OMP_NUM_THREADS=1``:
two torch threads on contended cores spend most of their time waiting for each other, which
slows both scorers several-fold and hides the difference in work (see the closing note of
issue 14 for figures at one and two threads).
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


def timed_rounds(scorers, items, rounds):
    """All items through each scorer per round, alternating which scorer goes first.
    Returns per scorer a list of (results, seconds), one per round."""
    names = list(scorers)
    out = {name: [] for name in names}
    for k in range(rounds):
        for name in (names if k % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            results = scorers[name].score(items)
            out[name].append((results, time.perf_counter() - t))
    return out


def spread(values):
    import statistics

    return f"{min(values):6.2f} / {statistics.median(values):6.2f} / {max(values):6.2f}"


def load_line():
    import os

    return "load average (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cpus"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--benchmark", default="arc_easy")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all items")
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

    print(load_line() + " (before)")
    scorers = {"selfaug": Selfaug(folder, args.batch_size), "lm_eval": LmEval(folder, args.batch_size)}
    for scorer in scorers.values():  # warm-up (first-call allocations, lazy inits)
        scorer.score(items[:2])
    timed = timed_rounds(scorers, items, args.rounds)
    print(load_line() + " (after)")

    n = len(items)
    rate = {name: [n / sec for _, sec in runs] for name, runs in timed.items()}
    ratio = [t_theirs / t_ours for (_, t_ours), (_, t_theirs) in zip(timed["selfaug"], timed["lm_eval"])]
    ours, theirs = timed["selfaug"][0][0], timed["lm_eval"][0][0]
    same_items = all(a["acc"] == b["acc"] and a["acc_norm"] == b["acc_norm"]
                     for (o, _), (t, _) in zip(timed["selfaug"], timed["lm_eval"]) for a, b in zip(o, t))
    max_diff = max(abs(x - y) for (o, _), (t, _) in zip(timed["selfaug"], timed["lm_eval"])
                   for a, b in zip(o, t) for x, y in zip(a["lls"], b["lls"]))
    acc = {name: sum(r["acc"] for r in res) / n for name, res in (("selfaug", ours), ("lm_eval", theirs))}
    accn = {name: sum(r["acc_norm"] for r in res) / n for name, res in (("selfaug", ours), ("lm_eval", theirs))}

    print(f"{args.rounds} interleaved rounds of {n} items; items/s min / median / max")
    for name in ("selfaug", "lm_eval"):
        print(f"{name:8s}: {spread(rate[name])} items/s   acc {acc[name]:.4f}  acc_norm {accn[name]:.4f}")
    print(f"speed ratio selfaug/lm_eval per round: {spread(ratio)}x")
    print(f"per-item acc and acc_norm identical in every round: {same_items}; max |Δ loglik| = {max_diff:.2e}")
    if not same_items:
        raise SystemExit("MISMATCH between selfaug and lm_eval")


if __name__ == "__main__":
    main()

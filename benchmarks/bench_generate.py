"""Generation engine vs a plain per-example ``model.generate`` loop, and judge throughput.

    .venv/bin/python benchmarks/bench_generate.py [--n 64] [--max-new-tokens 128] [--batch-size 16]

Self-answers to the first N packaged GSM8K questions on the embedded default model, greedy,
same prompts (chat template) both ways, in the same process. Prints tokens/s for both and the
ratio, then judge throughput: numeric items/s, embedding pairs/s, code_exec tests/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def gsm8k_questions(n: int) -> list[dict]:
    from selfaug_compiler.data.packaged import load_packaged

    return load_packaged("gsm8k").slice(0, n).to_pylist()


def bench_engine(loaded, prompts: list[str], max_new: int, batch_size: int) -> tuple[float, int]:
    from selfaug_compiler.generate.engine import SamplingParams, generate

    start = time.perf_counter()
    out = generate(loaded, prompts, SamplingParams(max_new_tokens=max_new), batch_size=batch_size, progress=False)
    return time.perf_counter() - start, sum(g.new_tokens for g in out)


def bench_loop(loaded, prompts: list[str], max_new: int) -> tuple[float, int]:
    import torch

    tok, model = loaded.tokenizer, loaded.model
    eos = list({tok.eos_token_id, *([model.generation_config.eos_token_id] if model.generation_config.eos_token_id is not None else [])})
    tokens = 0
    start = time.perf_counter()
    for p in prompts:
        enc = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True).to(loaded.device)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tok.pad_token_id)
        new = out[0, enc["input_ids"].shape[1]:]
        tokens += int((~torch.isin(new, torch.tensor(eos, device=new.device))).sum())
    return time.perf_counter() - start, tokens


def bench_judges(questions: list[dict]) -> None:
    from selfaug_compiler.judges.code_exec import run_tests, sandbox_mode
    from selfaug_compiler.judges.embedding import Embedder
    from selfaug_compiler.judges.numeric import numbers_match

    answers = [q["answer"] for q in questions]
    pairs = (answers * (2000 // max(1, len(answers)) + 1))[:2000]
    start = time.perf_counter()
    for a in pairs:
        numbers_match(a, a)
    print(f"numeric judge:    {len(pairs) / (time.perf_counter() - start):10.0f} items/s")
    emb = Embedder.load()
    emb.similarity(answers[:8], answers[:8])  # warm-up
    texts = (answers * (256 // max(1, len(answers)) + 1))[:256]
    start = time.perf_counter()
    emb.similarity(texts, list(reversed(texts)))
    print(f"embedding judge:  {len(texts) / (time.perf_counter() - start):10.1f} pairs/s (256 pairs)")
    code = "def add(a, b):\n    return a + b\n"
    n = 20
    start = time.perf_counter()
    ok = sum(run_tests(code, ["assert add(2, 3) == 5"]).passed for _ in range(n))
    print(f"code_exec judge:  {n / (time.perf_counter() - start):10.1f} tests/s ({ok}/{n} passed; {sandbox_mode()})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="packaged:smollm2-135m-instruct")
    ap.add_argument("--dtype", default="auto", help="auto (bf16 where the CPU runs it natively), float32, bfloat16")
    ap.add_argument("--skip-loop", action="store_true", help="engine only (the loop is slow on CPU)")
    ap.add_argument("--judges-only", action="store_true", help="only the judge throughput")
    args = ap.parse_args()

    if args.judges_only:
        bench_judges(gsm8k_questions(args.n))
        return
    from selfaug_compiler.models.loading import load_model

    loaded = load_model(args.model, dtype=args.dtype)
    questions = gsm8k_questions(args.n)
    prompts = [q["question"] for q in questions]
    print(f"model {loaded.ref} on {loaded.device} ({loaded.dtype}); {len(prompts)} GSM8K self-answers, "
          f"max_new_tokens={args.max_new_tokens}")
    secs, toks = bench_engine(loaded, prompts, args.max_new_tokens, args.batch_size)
    engine_tps = toks / secs
    print(f"engine (batch {args.batch_size}): {toks} tokens in {secs:.1f}s = {engine_tps:.1f} tok/s")
    if not args.skip_loop:
        secs, toks = bench_loop(loaded, prompts, args.max_new_tokens)
        loop_tps = toks / secs
        print(f"per-example loop:  {toks} tokens in {secs:.1f}s = {loop_tps:.1f} tok/s")
        print(f"ratio engine/loop: {engine_tps / loop_tps:.2f}x")
    bench_judges(questions)


if __name__ == "__main__":
    main()

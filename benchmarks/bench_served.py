"""The openai backend against a local ``transformers serve`` vs selfaug's engine, same prompts.

    .venv/bin/python benchmarks/bench_served.py [--n 16] [--max-new-tokens 128] [--concurrency 4] [--base-url URL]

Greedy self-answers to the first N packaged GSM8K questions on the packaged model: (a) the
``transformers`` backend (selfaug's engine in this process, batch 16); (b) the ``openai`` backend
against a server (``--base-url``, else ``transformers serve`` started here on a free loopback port
serving the packaged model's HF folder). Prints tokens/s side by side (wall time: the server runs in
another process, so CPU seconds of this one say nothing).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_generate import gsm8k_questions  # noqa: E402


def start_server(model: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hub = tempfile.mkdtemp()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("transformers")), "serve", str(model), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_CACHE": hub}, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(180):
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            return proc, url
        except OSError:
            time.sleep(1)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit("transformers serve did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--base-url", default=None)
    args = ap.parse_args()
    from selfaug_compiler.generate.backends import make_backend
    from selfaug_compiler.generate.engine import SamplingParams
    from selfaug_compiler.models.cache import converted_packaged_model
    from selfaug_compiler.models.loading import load_model

    model = converted_packaged_model("smollm2-135m-instruct")
    prompts = [q["question"] for q in gsm8k_questions(args.n)]
    params, seeds = SamplingParams(temperature=0.0, max_new_tokens=args.max_new_tokens), list(range(len(prompts)))
    proc, url = (None, args.base_url) if args.base_url else start_server(model)
    try:
        ways = {"transformers (engine, batch 16)": make_backend("transformers", loaded=load_model(str(model))),
                f"openai -> transformers serve (concurrency {args.concurrency})":
                    make_backend("openai", model=str(model), base_url=url, max_concurrency=args.concurrency)}
        print(f"{len(prompts)} GSM8K self-answers, greedy, max_new_tokens={args.max_new_tokens}")
        for label, backend in ways.items():
            start = time.perf_counter()
            gens = backend.generate(prompts, params, seeds=seeds, batch_size=16)
            secs = time.perf_counter() - start
            toks = sum(g.new_tokens for g in gens)
            cut = sum(g.finish_reason == "length" for g in gens)
            print(f"{label:48s} {toks:6d} tokens {secs:7.1f}s = {toks / secs:6.1f} tok/s ({cut} cut at the limit)")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)


if __name__ == "__main__":
    main()

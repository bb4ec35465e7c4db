"""`selfaug eval` (any model on any benchmark, through the result cache) and `selfaug compare`.

Heavy imports (torch, transformers) happen inside the commands. The store is opened only for
each cache read and write, never for the length of an evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from selfaug_compiler.errors import SelfaugError

DTYPES = ("auto", "float32", "bfloat16", "float16")


class ShortLivedStore:
    """get_eval/put_eval, each in its own short store connection (other processes may write)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def get_eval(self, model_key: str, bench_fp: str):
        from selfaug_compiler.store import open_store
        from selfaug_compiler.store.lock import resolve_store_path

        if not resolve_store_path(self.path).exists():
            return None
        with open_store(self.path, read_only=True) as store:
            return store.get_eval(model_key, bench_fp)

    def put_eval(self, *args: Any) -> None:
        from selfaug_compiler.store import open_store

        with open_store(self.path) as store:
            store.put_eval(*args)


def _check_choice(value: str, allowed: tuple[str, ...], flag: str) -> str:
    if value not in allowed:
        raise SelfaugError(f"unknown value {value!r} for {flag}", field=flag, expected=", ".join(allowed), found=value)
    return value


def eval_command(
    model: Annotated[str, typer.Argument(help="packaged:NAME, a hub id, a local model folder or an adapter artifact")],
    benchmark: Annotated[List[str], typer.Option("--benchmark", "-b", help="registry name, jsonl file, "
                                                 "lm_eval:TASK or lm_eval:task.yaml; repeatable")],
    limit: Annotated[Optional[int], typer.Option("--limit", help="items per benchmark (a fixed subset by seed)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the item subset")] = 0,
    dtype: Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16")] = "auto",
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="requests per forward pass")] = 32,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="generation benchmarks")] = 256,
    fmt: Annotated[str, typer.Option("--format", help="text | json")] = "text",
    store: Annotated[Optional[str], typer.Option("--store", help="store file (default: $SELFAUG_STORE or .selfaug/store.duckdb)")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="neither read nor write the result cache")] = False,
    num_fewshot: Annotated[Optional[int], typer.Option("--num-fewshot", min=0, help="few-shot "
                                                       "examples (default: lm_eval: the task's; packaged: 0, examples "
                                                       "from items outside the subset)")] = None,
    fewshot_seed: Annotated[int, typer.Option("--fewshot-seed", help="few-shot sampler seed")] = 1234,
    apply_chat_template: Annotated[bool, typer.Option("--apply-chat-template", help="format "
                                                      "requests with the model's chat template (packaged generation "
                                                      "benchmarks always use it)")] = False,
    include_path: Annotated[Optional[List[str]], typer.Option("--include-path", help="lm_eval: benchmarks: a folder "
                                                              "of task YAMLs; repeatable")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="lm_eval: benchmarks: an item's pass/fail metric "
                                                  "(default: acc, or exact_match for generation)")] = None,
    prompt_format: Annotated[str, typer.Option("--prompt-format", help="chat: prompts through the model's chat "
                                               "template; completion: a base model without one gets raw text "
                                               "(as model.prompt_format in a recipe)")] = "chat",
    backend: Annotated[str, typer.Option("--backend", help="what generates replies of generation benchmarks: "
                                         "transformers | vllm (CUDA) | openai (an endpoint serving MODEL as the "
                                         "base model; multiple choice stays in-process)")] = "transformers",
    served_model: Annotated[Optional[str], typer.Option("--served-model", help="--backend openai: the name the "
                                                        "server knows (default: MODEL)")] = None,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="--backend openai: the server's URL "
                                                    "ending in /v1 (default: $OPENAI_BASE_URL)")] = None,
) -> None:
    """Evaluate MODEL on benchmarks (scores equal lm-evaluation-harness's at the same dtype)."""
    _check_choice(dtype, DTYPES, "--dtype")
    _check_choice(fmt, ("text", "json", "markdown"), "--format")
    _check_choice(prompt_format, ("chat", "completion"), "--prompt-format")
    _check_choice(backend, ("transformers", "vllm", "openai"), "--backend")
    if prompt_format == "completion" and apply_chat_template:
        raise SelfaugError("--apply-chat-template asks for the chat template of a completion-style model",
                           field="--apply-chat-template", hint="drop one of --apply-chat-template and "
                           "--prompt-format completion")
    if limit is not None and limit < 1:
        raise SelfaugError("--limit must be at least 1", field="--limit", found=str(limit))
    from selfaug_compiler.evaluate.core import LazyModel, evaluate_cached
    from selfaug_compiler.evaluate.eval_backend import with_backend
    from selfaug_compiler.evaluate.registry import load_benchmark
    from selfaug_compiler.progress import Progress

    lm_eval = {"include_path": list(include_path or []),
               "settings": {"num_fewshot": num_fewshot, "fewshot_seed": fewshot_seed,
                            "apply_chat_template": apply_chat_template, "metric": metric}}
    prompt = None  # packaged benchmarks (eval.packaged in a recipe; evaluate/prompting.py)
    if num_fewshot or apply_chat_template:
        prompt = {"num_fewshot": num_fewshot or 0, "fewshot_seed": fewshot_seed,
                  "chat_template": True if apply_chat_template else None}
    benches = [load_benchmark(b, limit=limit, seed=seed, max_new_tokens=max_new_tokens, lm_eval=lm_eval,
                              prompt=prompt) for b in benchmark]
    spec = _backend_spec(backend, served_model, base_url, prompt_format)  # evaluate/eval_backend.py
    benches = [with_backend(b, spec) for b in benches]
    lazy = LazyModel(model, dtype=dtype, device=device, prompt_format=prompt_format, backend=spec)
    cache = None if no_cache else ShortLivedStore(store)
    outcomes = []
    for b in benches:
        with Progress(f"eval {b.name}") as progress:
            outcomes.append(evaluate_cached(lazy, b, cache, batch_size=batch_size, progress=progress))
    if fmt == "json":
        out = {o.benchmark.name: {"acc": o.metrics.get("acc"), "acc_norm": o.metrics.get("acc_norm"),
                                  "n": o.metrics.get("n"), "fingerprint": o.benchmark.fingerprint,
                                  "cached": o.cached, "model_key": lazy.key(),
                                  "backend": o.metrics.get("backend")} for o in outcomes}
        print(json.dumps(out, indent=2))
        return
    _print_eval_table(model, lazy.key(), outcomes)
    if cache is None:
        print("result cache: off (--no-cache)")
    else:
        from selfaug_compiler.store.lock import resolve_store_path

        print(f"result cache: store {resolve_store_path(store).resolve()}")


def _backend_spec(kind: str, served_model: str | None, base_url: str | None, prompt_format: str) -> dict | None:
    """``--backend`` as an eval backend spec (None: transformers), vllm checked like ``validate`` does."""
    if kind == "transformers":
        for flag, value in (("--served-model", served_model), ("--base-url", base_url)):
            if value is not None:
                raise SelfaugError(f"{flag} applies to --backend openai", field=flag, hint="add --backend openai")
        return None
    if kind == "vllm":
        import importlib.util

        from selfaug_compiler.precision import visible_cuda_devices

        if importlib.util.find_spec("vllm") is None or visible_cuda_devices() == 0:
            raise SelfaugError("--backend vllm needs the vllm package and a CUDA GPU", field="--backend",
                               expected="vllm importable and a visible NVIDIA GPU",
                               hint="pip install 'selfaug-compiler[vllm]' on the GPU machine, or --backend transformers")
    return {"kind": kind, "served_model": served_model, "base_url": base_url,
            "mode": "completions" if prompt_format == "completion" else "chat"}


def _print_eval_table(model: str, key: str, outcomes: list) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{model}  ({key})")
    for col in ("benchmark", "n", "acc", "acc_norm", "chance", "fingerprint", "cached"):
        table.add_column(col, justify="left" if col in ("benchmark", "fingerprint") else "right")
    for o in outcomes:
        m = o.metrics
        pct = (lambda v: "–" if v is None else f"{100 * v:.1f}")
        table.add_row(o.benchmark.name, str(m.get("n")), pct(m.get("acc")), pct(m.get("acc_norm")),
                      pct(m.get("chance")), o.benchmark.fingerprint, "yes" if o.cached else "no")
    Console().print(table)


def compare_command(
    runs: Annotated[List[str], typer.Argument(help="report.json files, run folders or run ids, compared in this order")],
    reference: Annotated[Optional[str], typer.Option(
        "--reference", help="the run the others are tested against: an argument as given or a run's name "
                            "(default: the first argument)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text | json | markdown")] = "text",
    html_out: Annotated[Optional[Path], typer.Option(
        "--html", help="also write a compare.html there, linking every run's report.html")] = None,
    store: Annotated[Optional[str], typer.Option("--store", help="store file for run ids")] = None,
    seed: Annotated[int, typer.Option("--seed", help="bootstrap seed")] = 0,
) -> None:
    """Put several runs side by side and mark which differences from the reference run are significant."""
    _check_choice(fmt, ("text", "json", "markdown"), "--format")
    if len(runs) < 2:
        raise SelfaugError("compare needs at least two runs", found=f"{len(runs)} run", expected="RUN RUN ...")
    from selfaug_compiler.report.compare import compare_reports, load_run, reference_first

    loaded = [load_run(r, store) for r in runs]
    order = reference_first(runs, [(name, rep) for name, rep, _ in loaded], reference)
    loaded = [loaded[i] for i in order]
    comparison = compare_reports([(name, rep) for name, rep, _ in loaded], seed=seed,
                                 reference_by="--reference" if reference is not None else "first run given",
                                 files=[path for _, _, path in loaded])
    if html_out is not None:
        from selfaug_compiler.files import write_atomic
        from selfaug_compiler.report.html import render_compare_html

        target = html_out / "compare.html" if html_out.is_dir() else html_out
        write_atomic(target, render_compare_html(comparison, target.resolve()))
    if fmt == "json":
        print(json.dumps(comparison, indent=2, default=str))
        return
    from rich.console import Console

    from selfaug_compiler.report.table import compare_markdown, compare_table, reference_line

    if fmt == "markdown":
        print(f"{reference_line(comparison)}\n\n{compare_markdown(comparison)}")
    else:
        console = Console()
        if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
            console = Console(width=150)
        console.print(reference_line(comparison), highlight=False)
        console.print(compare_table(comparison))
    from selfaug_compiler.report.frontier import frontier_lines

    print("\n".join(frontier_lines(comparison["frontier"])))
    if html_out is not None:
        print(f"compare.html: {target}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)

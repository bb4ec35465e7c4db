"""Evaluate one model on benchmarks, through the result cache.

Used by the ``evaluate`` step and by ``selfaug eval``: the same code and the same cache. The
cache key is (model key, benchmark fingerprint); the model key is the weights fingerprint plus
the compute dtype (bf16 and fp32 scores differ slightly), and how prompts are formatted when that
is not the tokenizer's own template (a recipe's chat template, or completion style), so a model is
never loaded when every result it would produce is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from selfaug_compiler.evaluate.eval_backend import on_backend
from selfaug_compiler.evaluate.registry import Benchmark
from selfaug_compiler.progress import ProgressFn as Progress


@dataclass
class EvalOutcome:
    benchmark: Benchmark
    metrics: dict[str, Any]
    items: list[dict[str, Any]]
    cached: bool


class LazyModel:
    """A model reference that loads on first use (never, when everything is cached)."""

    def __init__(self, ref: str, *, revision: str | None = None, dtype: str = "auto", device: str = "auto",
                 trust_remote_code: bool = False, chat_template: str | None = None,
                 base_dir: Path | None = None, loaded: Any = None, prompt_format: str = "chat",
                 backend: dict[str, Any] | None = None, trained: bool = False) -> None:
        self.ref, self.revision, self.dtype, self.device = ref, revision, dtype, device
        self.trust_remote_code, self.chat_template, self.base_dir = trust_remote_code, chat_template, base_dir
        self._loaded, self.prompt_format = loaded, prompt_format
        self.backend, self.trained = backend, trained  # eval.backend (evaluate/eval_backend.py); None: transformers
        self._key: str | None = None
        self._target: Any = None

    def key(self) -> str:
        """``<weights fingerprint>[<format tag>]:<dtype>`` without loading the weights."""
        if self._key is None:
            if self._loaded is not None:
                fp, dtype = self._loaded.fingerprint, self._loaded.dtype
            else:
                from selfaug_compiler.models.fingerprint import folder_fingerprint
                from selfaug_compiler.models.loading import model_folder, resolve_device, resolve_dtype

                _, folder = model_folder(self.ref, revision=self.revision, base_dir=self.base_dir)
                fp = folder_fingerprint(folder) if isinstance(folder, Path) else f"hub:{folder}@{self.revision or 'main'}"
                dtype = resolve_dtype(self.dtype, resolve_device(self.device))
            self._key = f"{fp}{self._format_tag()}:{str(dtype).replace('torch.', '')}"
        return self._key

    def _format_tag(self) -> str:
        """How prompts are formatted, when not the tokenizer's own template (so cached results of the
        same weights asked another way are not reused): ``:completion`` or ``:tpl-<sha256[:16]>``."""
        if self.prompt_format == "completion":
            return ":completion"
        if self.chat_template:
            import hashlib

            from selfaug_compiler.models.chat_templates import chat_template_file

            path = chat_template_file(self.chat_template, None)
            return ":tpl-" + (hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing")
        return ""

    def get(self) -> Any:
        if self._loaded is None:
            from selfaug_compiler.models.loading import load_model

            self._loaded = load_model(self.ref, revision=self.revision, dtype=self.dtype, device=self.device,
                                      trust_remote_code=self.trust_remote_code, chat_template=self.chat_template,
                                      base_dir=self.base_dir, prompt_format=self.prompt_format)
        return self._loaded

    def target(self, bench: Any) -> Any:
        """What scores ``bench``: the eval backend (an ``EvalTarget``) for a generation benchmark
        when one is set, else the model loaded in-process."""
        from selfaug_compiler.evaluate.eval_backend import EvalTarget, build_backend, on_backend

        if not self.backend or not on_backend(bench):
            return self.get()
        if self._target is None:
            self._target = EvalTarget(build_backend(self.backend, ref=self.ref, revision=self.revision,
                                                    base_dir=self.base_dir, trained=self.trained,
                                                    prompt_format=self.prompt_format, dtype=self.dtype), self)
        return self._target


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(bench: Benchmark, items: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metrics stored with the per-item results."""
    acc_norm = [r["acc_norm"] for r in items if "acc_norm" in r]
    metrics = {
        "benchmark": bench.name, "type": bench.type, "answer_type": bench.answer_type, "n": len(items),
        "acc": _mean([r["acc"] for r in items]),
        "acc_norm": _mean(acc_norm) if len(acc_norm) == len(items) else None,
        "chance": bench.chance, "fingerprint": bench.fingerprint, "source": bench.source, "total": bench.total,
    }
    metrics.update(extra or {})
    return metrics


def run_benchmark(loaded: Any, bench: Benchmark, *, batch_size: int = 16,
                  progress: Progress | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score one benchmark (no cache): metrics and per-item results."""
    own_scorer = getattr(bench, "score", None)  # lm_eval: benchmarks (evaluate/lm_eval_run.py)
    if own_scorer is not None:
        return own_scorer(loaded, batch_size=batch_size, progress=progress)

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total, unit="items")

    if bench.type == "multiple_choice":
        from selfaug_compiler.evaluate.loglik import score_multiple_choice

        mc_items = bench.items
        if bench.settings.get("chat"):  # eval.packaged.NAME.chat_template (evaluate/prompting.py)
            from selfaug_compiler.evaluate.prompting import chat_contexts

            mc_items = chat_contexts(loaded.tokenizer, mc_items)
        items = score_multiple_choice(loaded, mc_items, batch_size=max(batch_size, 1), progress=report)
        return summarize(bench, items), items
    from selfaug_compiler.evaluate.generation import score_generation

    items = score_generation(loaded, bench.items, answer_type=bench.answer_type or "text",
                             max_new_tokens=int(bench.settings.get("max_new_tokens", 256)), stop=bench.settings.get("stop"),
                             batch_size=batch_size, progress=report, chat=False if bench.settings.get("chat") is False else None)  # raw, or the model's format
    return summarize(bench, items), items


def evaluate_cached(model: LazyModel, bench: Benchmark, store: Any, *, batch_size: int = 16,
                    progress: Progress | None = None,
                    scorer: Callable[..., tuple[dict, list]] | None = None) -> EvalOutcome:
    """The cached result of (model, benchmark), computing and storing it when absent."""
    model_key = model.key()
    if store is not None:
        hit = store.get_eval(model_key, bench.fingerprint)
        if hit is not None:
            metrics, table = hit
            return EvalOutcome(bench, metrics, table.to_pylist(), cached=True)
    run = scorer or run_benchmark
    target = model.target(bench)
    metrics, items = run(target, bench, batch_size=batch_size, progress=progress)
    metrics = dict(metrics, model_key=model_key, model_ref=model.ref)
    if on_backend(bench):  # which engine generated the replies (generate/backends provenance)
        from selfaug_compiler.generate.backends.steps import backend_of

        metrics["backend"] = backend_of(target).provenance()
    if store is not None:
        store.put_eval(model_key, bench.fingerprint, bench.name, metrics, items)
    return EvalOutcome(bench, metrics, items, cached=False)

"""Generation benchmarks on a backend (``eval.backend``; ``generate/backends``).

What generates in an evaluation (a generation benchmark's replies, style retention's answers, the
KL diagnostic's base samples) goes through the same ``Backend`` interface as the generate steps.
The evaluated model is a weights folder (the base model, or a train step's checkpoint), so the
backend loads *that folder* in-process:

- ``transformers`` (default): selfaug's engine on the loaded model, results bit-identical to
  before backends existed (no ``backend`` param, cache fingerprints unchanged);
- ``vllm``: vLLM's offline engine on the checkpoint folder (``LLM(model=<folder>)``), CUDA only.
- ``openai``: an endpoint serves one fixed model, never a checkpoint this run just wrote; it is
  accepted only for an evaluation of the *base* model (no train step input): ``validate`` refuses
  it in recipes (which always evaluate fine-tuned checkpoints too), a step given a checkpoint
  fails with the same reason.

Log-likelihood work (multiple-choice benchmarks, the held-out gold loss, the KL logits) needs the
model's logits and stays in-process (``EvalTarget.local()``). A non-default backend is part of the
benchmark fingerprint (``with_backend``; the engine's numerics can move scores), and each stored
generation result records the backend's ``provenance()`` under ``metrics["backend"]``.
"""

from __future__ import annotations

from typing import Any

from selfaug_compiler.errors import SelfaugError

CONTENT = ("kind", "served_model", "mode")  # BackendSpec's content fields (recipe/schema_backends.py)
CHECKPOINT_REFUSED = ("an openai endpoint serves one fixed model; it cannot evaluate a fine-tuned checkpoint "
                      "this run writes")
CHECKPOINT_HINT = "set eval.backend.kind: transformers (or vllm on a CUDA machine): both load the checkpoint folder"
ADAPTER_REFUSED = ("the vllm eval backend loads full model folders, and a LoRA train step saves an adapter "
                   "(train.method: lora)")
ADAPTER_HINT = "set eval.backend.kind: transformers (it merges the adapter into the base), or train.method: full"


def on_backend(bench: Any) -> bool:
    """Whether the benchmark's scoring is generation the backend can do (not lm_eval's own scorer)."""
    return bench.type == "generation" and getattr(bench, "score", None) is None


def with_backend(bench: Any, content: dict[str, Any] | None) -> Any:
    """The benchmark with the eval backend in its settings (so its fingerprint) when that is not
    transformers and the benchmark generates; otherwise the benchmark unchanged."""
    import dataclasses

    if not content or content.get("kind", "transformers") == "transformers" or not on_backend(bench):
        return bench
    return dataclasses.replace(bench, settings={**bench.settings, "backend": {k: content.get(k) for k in CONTENT}})


def step_backend_spec(step: Any) -> dict[str, Any] | None:
    """The eval backend of a plan step: content (``params["backend"]``) plus speed (``speed["backend"]``)."""
    content = step.params.get("backend")
    if not content or content.get("kind", "transformers") == "transformers":
        return None
    return {**dict(content), **dict(step.speed.get("backend") or {})}


def refuse_checkpoint(spec: dict[str, Any] | None, trained: bool) -> None:
    """An openai eval backend asked to evaluate a checkpoint: refused (before any cache lookup)."""
    if trained and spec and spec.get("kind") == "openai":
        raise SelfaugError(CHECKPOINT_REFUSED, field="eval.backend.kind", expected="transformers | vllm",
                           found="openai", hint=CHECKPOINT_HINT)


def build_backend(spec: dict[str, Any], *, ref: str, revision: str | None = None, base_dir: Any = None,
                  trained: bool = False, prompt_format: str = "chat", dtype: str = "auto") -> Any:
    """The backend ``spec`` serving the model at ``ref`` (a checkpoint folder when ``trained``); ``dtype`` is
    ``model.dtype``, given to vLLM resolved as on any CUDA device (as the generate steps do)."""
    from selfaug_compiler.generate.backends import make_backend
    from selfaug_compiler.generate.backends.steps import OPENAI_OPTIONS, VLLM_OPTIONS, vllm_dtype

    kind = spec["kind"]
    refuse_checkpoint(spec, trained)
    if kind == "openai":
        backend = make_backend("openai", model=spec.get("served_model") or ref,
                               **{k: spec[k] for k in OPENAI_OPTIONS if spec.get(k) is not None})
    elif kind == "vllm":
        from selfaug_compiler.models.loading import model_folder

        _, folder = model_folder(ref, revision=revision, base_dir=base_dir)
        if hasattr(folder, "joinpath") and folder.joinpath("adapter_config.json").is_file():
            raise SelfaugError(ADAPTER_REFUSED, field="eval.backend.kind", found=str(folder), hint=ADAPTER_HINT)
        options = {k: spec[k] for k in VLLM_OPTIONS if spec.get(k) is not None}
        options["dtype"] = vllm_dtype(dtype)
        backend = _vllm_engine(str(folder), options)
    else:
        raise SelfaugError(f"unknown eval backend {kind!r}", field="eval.backend.kind",
                           expected="transformers | vllm | openai", found=str(kind))
    backend.prompt_format = prompt_format  # models/completion.py: how a chat=None prompt is sent
    return backend


_LIVE: dict[str, Any] = {}  # the one vLLM engine of this process: (folder, options) -> backend


def _vllm_engine(folder: str, options: dict[str, Any]) -> Any:
    """The vLLM backend on ``folder``, reused by the next evaluation of the same folder (the before-evals
    of a recipe share the base model's engine); another folder first drops the previous engine, so that
    its GPU memory (``gpu_memory_utilization`` of the device) is released before the next one loads."""
    import gc
    import json

    from selfaug_compiler.generate.backends import make_backend

    key = json.dumps([folder, options], sort_keys=True)
    if key not in _LIVE:
        _LIVE.clear()
        gc.collect()
        _LIVE[key] = make_backend("vllm", model=folder, **options)
    return _LIVE[key]


class EvalTarget:
    """One evaluated model as a generation backend, with the in-process model for logit work."""

    def __init__(self, backend: Any, lazy: Any) -> None:
        self.backend, self.lazy = backend, lazy
        self.kind = backend.kind

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.backend.generate(*args, **kwargs)

    def provenance(self) -> dict[str, Any]:
        return self.backend.provenance()

    def local(self) -> Any:
        """The model loaded in-process (multiple choice, gold loss): loaded on first use."""
        return self.lazy.get()


def in_process(loaded: Any) -> Any:
    """The in-process model behind ``loaded`` (itself unless it is an ``EvalTarget``)."""
    return loaded.local() if isinstance(loaded, EvalTarget) else loaded


def greedy_seeds(backend: Any, n: int) -> list[int] | None:
    """Seeds for a greedy benchmark: none for the engine (as before backends), else 0 per request."""
    return None if backend.kind == "transformers" else [0] * n

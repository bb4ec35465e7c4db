"""Generate and judge steps on a backend: build it from the step, record it per row, fail clearly.

The step's content params hold ``model.spec.backend`` (kind, served_model, mode); its speed dict
holds the whole backend spec (``speed["backend"]``: URL, concurrency, retries, timeouts), which the
planner puts there because speed fields never reach content params.
"""

from __future__ import annotations

from typing import Any

from selfaug_compiler.errors import StepFailed
from selfaug_compiler.generate.backends.base import Backend, BackendError, make_backend
from selfaug_compiler.models.completion import prompt_format, row_template

OPENAI_OPTIONS = ("base_url", "api_key_env", "mode", "max_concurrency", "max_retries", "backoff_s", "request_timeout_s")
VLLM_OPTIONS = ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len")


def step_backend(ctx: Any, spec: dict[str, Any]) -> Backend:
    """The backend named by the step's model spec, with ``ref``/``fingerprint`` for row provenance."""
    content = dict(spec.get("backend") or {})
    options = {**content, **dict(ctx.step.speed.get("backend") or {})}
    kind = options["kind"]
    model = options.get("served_model") or spec.get("ref")
    names = OPENAI_OPTIONS if kind == "openai" else VLLM_OPTIONS
    extra = vllm_model_options(ctx, spec) if kind == "vllm" else {}
    try:
        backend = make_backend(kind, model=model, **{k: options[k] for k in names if k in options}, **extra)
    except BackendError as e:
        raise StepFailed(ctx.step.name, str(e)) from None
    backend.ref = spec.get("ref")
    backend.prompt_format = prompt_format(spec)  # models/completion.py
    backend.fingerprint = (ctx.step.params.get("model") or {}).get("fingerprint")
    return backend


def vllm_dtype(preference: Any) -> str:
    """``model.dtype`` for ``LLM(dtype=)``: ``auto`` resolved as on any CUDA device (``precision.dtype_name``)."""
    from selfaug_compiler.precision import cuda_bf16_supported, dtype_name

    return dtype_name(str(preference or "auto"), "cuda", cuda_bf16=cuda_bf16_supported())


def vllm_model_options(ctx: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """``model.dtype`` (``auto`` resolved as on any CUDA device: ``precision.dtype_name``) and the text of
    ``model.chat_template`` (a file next to the recipe or a shipped name) for the vllm backend."""
    out: dict[str, Any] = {"dtype": vllm_dtype(spec.get("dtype"))}
    if spec.get("chat_template"):
        from selfaug_compiler.models.chat_templates import chat_template_file

        path = chat_template_file(str(ctx.resolve_path(spec["chat_template"])), None)
        try:
            out["chat_template"] = path.read_text(encoding="utf-8")
        except OSError as e:
            raise StepFailed(ctx.step.name, f"model.chat_template {spec['chat_template']!r}: cannot read {path}: {e}",
                             hint="point model.chat_template at a jinja file next to the recipe") from None
    return out


def backend_of(loaded: Any) -> Backend:
    """``loaded`` itself when it is a backend, else the transformers backend around the loaded model."""
    if hasattr(loaded, "provenance") and hasattr(loaded, "kind"):
        return loaded
    from selfaug_compiler.generate.backends.transformers_backend import TransformersBackend

    return TransformersBackend(loaded, getattr(loaded, "ref", None))


def with_backend_meta(row: dict[str, Any], loaded: Any, gen: Any) -> dict[str, Any]:
    """The row with ``meta.chat_template`` (the chat template it was generated with:
    ``models/completion.row_template``) and, on a backend other than the in-process transformers
    one, ``meta.backend`` (kind, model, batch_invariant) and what the server reported
    (``served_model``, ``system_fingerprint``); no ``meta.backend`` means transformers."""
    from selfaug_compiler.augment.common import dump, load_meta

    meta = load_meta(row.get("meta"))
    meta["chat_template"] = row_template(loaded)
    if hasattr(loaded, "provenance") and hasattr(loaded, "kind"):
        meta["backend"] = {**loaded.provenance(), **dict(getattr(gen, "meta", None) or {})}
    return {**row, "meta": dump(meta)}


def step_failure(ctx: Any, error: Exception, stats: dict[str, int]) -> None:
    """A backend failure as one ``StepFailed`` (exit 1); anything else is raised as it was."""
    if not isinstance(error, BackendError):
        raise error
    raise StepFailed(ctx.step.name, f"{error} ({stats['generated_rows']} rows of this attempt are staged)",
                     hint="fix the server or the recipe's model.backend, then run the same command: "
                          "staged rows are kept and only the rest is generated") from None

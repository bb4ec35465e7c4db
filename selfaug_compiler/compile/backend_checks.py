"""validate's checks of ``model.backend`` (generate/backends): installed, consistent, reachable.

Torch-free and import-free: a backend's library is looked up with ``importlib.util.find_spec``,
CUDA through the driver's files (``precision.visible_cuda_devices``). ``online=True`` (``selfaug
validate --online``) asks the server's ``GET /models`` and confirms the served model name (a model it
does not list must answer a 1-token request).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from selfaug_compiler.precision import visible_cuda_devices

WHERE = ("model", "backend")
_ONLINE = [False]


def set_online(flag: bool) -> None:
    """``selfaug validate --online``: also ask the servers (like ``paths.allow_outside_paths``)."""
    _ONLINE[0] = bool(flag)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _check_local(checker: Any, spec: Any, where: tuple[str, ...]) -> None:
    """vllm installed and CUDA visible; openai-only fields unused."""
    if spec.kind == "vllm":
        if not _installed("vllm"):
            checker.add(where + ("kind",), "the vllm backend needs the vllm package, which is not installed",
                        expected="vllm importable", found="no module vllm",
                        hint="pip install 'selfaug-compiler[vllm]' on the GPU machine, or kind: transformers")
        if visible_cuda_devices() == 0:
            checker.add(where + ("kind",), "the vllm backend needs a CUDA GPU and this machine has none "
                        "(no /proc/driver/nvidia/gpus, or CUDA_VISIBLE_DEVICES hides them)",
                        expected="a visible NVIDIA GPU", found="none",
                        hint="validate and run on the GPU machine, or use kind: transformers here")
    if spec.kind != "openai":
        for name in ("served_model", "base_url"):
            if getattr(spec, name) is not None:
                checker.add(where + (name,), f"{name} only applies to kind: openai", severity="warning",
                            found=f"kind: {spec.kind}", hint=f"remove {name}, or set kind: openai")


def check_eval_backend(checker: Any) -> None:
    """``eval.backend`` (evaluate/eval_backend.py): an in-process engine that loads each evaluated
    checkpoint. An openai endpoint serves one fixed model, and every recipe evaluates its fine-tuned
    checkpoints (and compares them with the base on the same engine), so it is refused here."""
    from selfaug_compiler.evaluate.eval_backend import ADAPTER_HINT, ADAPTER_REFUSED, CHECKPOINT_HINT, CHECKPOINT_REFUSED

    spec, where = checker.recipe.eval.backend, ("eval", "backend")
    if spec.kind == "openai":
        checker.add(where + ("kind",), f"{CHECKPOINT_REFUSED} (the recipe's eval.after.* steps, scored against "
                    "the base model on the same engine)", expected="transformers | vllm", found="openai",
                    hint=CHECKPOINT_HINT)
        return
    _check_local(checker, spec, where)
    if spec.kind != "vllm":
        return
    if any(stage.train.method == "lora" for stage in checker.recipe.stage_list()):
        checker.add(where + ("kind",), ADAPTER_REFUSED, expected="train.method full or freeze", found="lora",
                    hint=ADAPTER_HINT)
    if checker.recipe.model.chat_template:  # vllm_backend.py formats chats with the folder's own template
        checker.add(where + ("kind",), "the vllm eval backend formats prompts with each model folder's own chat "
                    "template, so model.chat_template would not apply to the base model's evaluation",
                    expected="no model.chat_template with eval.backend.kind vllm",
                    found=str(checker.recipe.model.chat_template),
                    hint="set eval.backend.kind: transformers, or save the template into the model folder's tokenizer")


def check_backend(checker: Any, online: bool | None = None) -> None:
    online = _ONLINE[0] if online is None else online
    spec = checker.recipe.model.backend
    _check_local(checker, spec, WHERE)
    if spec.kind != "openai":
        return
    url = spec.base_url or os.environ.get("OPENAI_BASE_URL")
    if not url:
        checker.add(WHERE + ("base_url",), "the openai backend has no server URL here: base_url is unset and so "
                    "is OPENAI_BASE_URL (a warning: the run's machine may set it; its generate step fails without it)",
                    severity="warning", expected="an URL ending in /v1", found="nothing",
                    hint="export OPENAI_BASE_URL=http://127.0.0.1:8000/v1 (or set model.backend.base_url)")
    if not os.environ.get(spec.api_key_env):
        checker.add(WHERE + ("api_key_env",), f"${spec.api_key_env} is not set: requests go without a key "
                    "(fine for a local server)", severity="warning",
                    hint=f"export {spec.api_key_env}=... for a server that needs a key; never put a key in a recipe")
    if online and url:
        check_online(checker, spec, url)


def check_online(checker: Any, spec: Any, url: str) -> None:
    from selfaug_compiler.generate.backends.base import BackendError
    from selfaug_compiler.generate.backends.openai_backend import OpenAIBackend

    model = spec.served_model or checker.recipe.model.ref
    backend = OpenAIBackend(model, base_url=url, api_key_env=spec.api_key_env, max_retries=0,
                            request_timeout_s=min(spec.request_timeout_s, 10.0))
    try:
        names, listed = backend.list_models(), None
    except BackendError as e:
        names, listed = [], e
    if model in names:
        return
    # Not listed (or GET /models failed: `transformers serve FOLDER` lists only the HF hub cache and
    # answers 500 without one): one 1-token request for the model is the check instead.
    try:
        from selfaug_compiler.generate.engine import SamplingParams

        backend._one("ping", SamplingParams(max_new_tokens=1, temperature=0.0), 0, True)
        return
    except BackendError as e:
        asked = e
    if listed is not None and not names:
        checker.add(WHERE + ("base_url",), f"the server did not answer GET /models: {listed}; nor a 1-token "
                                           f"request for {model!r}: {asked}",
                    hint="start the server (README: 'Serving the model'), or fix base_url / OPENAI_BASE_URL")
        return
    checker.add(WHERE + ("served_model",), f"the server at {url} does not serve {model!r} (a 1-token request: {asked})",
                expected=" | ".join(names[:10]) or "a served model", found=model,
                hint="set model.backend.served_model to one of the names the server lists")

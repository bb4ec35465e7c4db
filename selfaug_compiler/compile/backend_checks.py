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


def check_parallel(checker: Any) -> None:
    """``data_parallel_size`` (generate/data_parallel.py): model.backend's in-process kinds only, and
    k workers must fit the GPUs: ``execution.slurm.gpus_per_node`` under the slurm launcher, else those
    visible here (torch-free: the driver's count; none readable: not checked); model.chat_template on
    an endpoint (the server applies its own template)."""
    recipe = checker.recipe
    spec, k = recipe.model.backend, recipe.model.backend.data_parallel_size
    augments = [stage.augment for stage in recipe.stage_list() if stage.augment is not None]
    others = [(("eval", "backend"), recipe.eval.backend, "evaluation runs one engine per checkpoint")]
    for judge in {id(j): j for a in augments if (j := getattr(a, "judge", None)) is not None}.values():
        if getattr(judge, "model", None) is not None:
            others.append((("augment", "judge", "model", "backend"), judge.model.backend, "a judge runs in one process"))
    for where, other, why in others:
        if other.data_parallel_size > 1:
            checker.add(where + ("data_parallel_size",), f"data_parallel_size applies to model.backend's generate "
                        f"steps only: {why}", expected="1", found=str(other.data_parallel_size),
                        hint="remove it here; set model.backend.data_parallel_size for the generate steps")
    if spec.kind == "openai" and recipe.model.chat_template:
        checker.add(("model", "chat_template"), "an openai endpoint formats chats with the server's own template: "
                    "model.chat_template is not sent", severity="warning", found=str(recipe.model.chat_template),
                    hint="start the server with the template (e.g. vllm serve --chat-template FILE), then remove it here")
    if k == 1:
        return
    at = WHERE + ("data_parallel_size",)
    if spec.kind == "openai":
        checker.add(at, "data_parallel_size starts local worker processes; an openai endpoint parallelises on the "
                    "server", expected="1 with kind: openai", found=str(k),
                    hint=f"set data_parallel_size: 1 and max_concurrency (now {spec.max_concurrency}) to the requests "
                         "the server should have in flight")
        return
    from selfaug_compiler.precision import resolve_device_name

    ex = recipe.execution
    slurm = ex.launcher == "slurm"  # the job's node declares its GPUs; elsewhere count this machine's
    gpus = ex.slurm.gpus_per_node if slurm else visible_cuda_devices()
    on_gpu = spec.kind == "vllm" or (ex.device == "cuda" if slurm else resolve_device_name(ex.device).startswith("cuda"))
    per = spec.tensor_parallel_size if spec.kind == "vllm" else 1
    if on_gpu and (gpus or slurm) and k * per > gpus:
        where = "execution.slurm.gpus_per_node declares" if slurm else "visible here"
        checker.add(at, f"data_parallel_size {k} x {per} GPU(s) per worker needs {k * per} GPUs; {gpus} {where}",
                    expected=f"data_parallel_size x GPUs per worker <= {gpus}", found=str(k),
                    hint="lower data_parallel_size or tensor_parallel_size, or validate on the machine that runs it"
                         + (" (or raise execution.slurm.gpus_per_node)" if slurm else ""))
    methods = {getattr(a, "method", None) for a in augments}
    if "sa_sft" in methods and not methods & {"s3ft", "sdft"}:
        checker.add(at, "SA-SFT's self-dialogues are not sharded: data_parallel_size has no effect on them",
                    severity="warning", found=str(k), hint="remove data_parallel_size")


def check_backend(checker: Any, online: bool | None = None) -> None:
    online = _ONLINE[0] if online is None else online
    spec = checker.recipe.model.backend
    _check_local(checker, spec, WHERE)
    check_parallel(checker)
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


LIST_TIMEOUT_S = 10.0  # GET /models: a running server answers it at once
PROBE_TIMEOUT_S = 180.0


def check_online(checker: Any, spec: Any, url: str) -> None:
    from selfaug_compiler.generate.backends.base import BackendError
    from selfaug_compiler.generate.backends.openai_backend import OpenAIBackend

    model = spec.served_model or checker.recipe.model.ref
    backend = OpenAIBackend(model, base_url=url, api_key_env=spec.api_key_env, max_retries=0,
                            request_timeout_s=min(spec.request_timeout_s, LIST_TIMEOUT_S))
    try:
        names, listed = backend.list_models(), None
    except BackendError as e:
        names, listed = [], e
    if model in names:
        return
    # Not listed (or GET /models failed: `transformers serve FOLDER` lists only the HF hub cache and
    # answers 500 without one): one 1-token request for the model is the check instead.
    # A server may load the model on its first request (`transformers serve` takes ~30 s on a CPU for
    # a 135M model): the probe waits as long as a run's requests would, up to PROBE_TIMEOUT_S.
    probe = OpenAIBackend(model, base_url=url, api_key_env=spec.api_key_env, max_retries=0,
                          request_timeout_s=min(spec.request_timeout_s, PROBE_TIMEOUT_S))
    try:
        from selfaug_compiler.generate.engine import SamplingParams

        probe._one("ping", SamplingParams(max_new_tokens=1, temperature=0.0), 0, True)
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

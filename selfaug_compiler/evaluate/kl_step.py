"""The ``diagnose`` step ``diagnose.kl_to_base``: base model + a train step's artifact + the task's
held-out prompts -> ``metrics.kl_to_base`` (``evaluate/kl_diag.py``).

Params (content): ``model`` (the base model section), ``limit``, ``seed`` (the eval seed: which
prompts; also the sampling seeds), ``max_new_tokens``, ``backend`` (``eval.backend`` when not
transformers: the base samples are generated on it; the logits stay in-process). Inputs: the task's ingest step
(``datasets["heldout"]``) and the train step (``StepResult.model``). Speed: ``batch_size``, ``device``.
"""

from __future__ import annotations

from types import SimpleNamespace

from selfaug_compiler.errors import StepFailed
from selfaug_compiler.runtime import StepContext, StepResult


def execute(ctx: StepContext) -> StepResult:
    from selfaug_compiler.evaluate.eval_backend import build_backend, step_backend_spec
    from selfaug_compiler.evaluate.kl_diag import kl_to_base
    from selfaug_compiler.evaluate.registry import select_subset
    from selfaug_compiler.evaluate.step import _heldout_ref
    from selfaug_compiler.models.completion import prompt_format
    from selfaug_compiler.models.loading import load_model

    params, speed = ctx.step.params, ctx.step.speed
    tuned_refs = [r.model for r in ctx.inputs.values() if r.model]
    if len(tuned_refs) != 1:
        raise StepFailed(ctx.step.name, "diagnose.kl_to_base needs exactly one train step as input")
    rows = ctx.store.read(_heldout_ref(ctx)).select(["key", "prompt"]).to_pylist()
    items = [SimpleNamespace(id=r["key"], prompt=r["prompt"]) for r in rows if r["prompt"]]
    if not items:
        raise StepFailed(ctx.step.name, "the held-out split has no prompts", hint="set task.split.heldout >= 1")
    prompts = [i.prompt for i in select_subset(items, int(params["limit"]), int(params["seed"]))]
    spec = params["model"]["spec"]
    common = dict(dtype=spec.get("dtype", "auto"), device=speed.get("device", "auto"),
                  trust_remote_code=bool(spec.get("trust_remote_code", False)),
                  chat_template=str(ctx.resolve_path(spec["chat_template"])) if spec.get("chat_template") else None,
                  base_dir=ctx.recipe_dir, prompt_format=prompt_format(spec))
    base = load_model(spec["ref"], revision=spec.get("revision"), **common)
    tuned = load_model(tuned_refs[0], **common)
    sampler = None
    backend = step_backend_spec(ctx.step)  # eval.backend: the base samples on it (evaluate/eval_backend.py)
    if backend is not None:
        sampler = build_backend(backend, ref=spec["ref"], revision=spec.get("revision"), base_dir=ctx.recipe_dir,
                                prompt_format=prompt_format(spec), dtype=str(spec.get("dtype") or "auto"))
    metrics = kl_to_base(base, tuned, prompts, max_new_tokens=int(params["max_new_tokens"]), seed=int(params["seed"]),
                         batch_size=int(speed.get("batch_size", 8)), progress=ctx.progress, sampler=sampler)
    return StepResult(metrics=metrics)

"""The ``train`` step: training-set version + base (or previous stage's) model -> model artifact.

Params (content, from ``compile/planner.py``): ``train`` (TrainSpec without speed fields),
``model`` ({"spec": ModelSpec dict, "fingerprint"}), ``seed``, ``system_prompt``,
``chat_template``. Speed: ``micro_batch_size``, ``num_processes`` (per machine), ``device``,
``save_every_steps``, ``strategy``, ``gradient_checkpointing`` and ``launch`` (the launch files'
settings, ``compile/launch_files.py``). Inputs: the ``mix`` step (``datasets["dataset"]``) and, in a continual
recipe, the previous ``train`` step, whose ``model`` is the starting point.

Files: ``<work_dir>/checkpoints`` (resume), ``<work_dir>/model`` (the artifact),
``<work_dir>/train_log.jsonl``. A finished artifact is returned as is when the step runs again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfaug_compiler.errors import SelfaugError
from selfaug_compiler.runtime import StepContext, StepResult

ROW_COLUMNS = ("prompt", "response", "messages")


def training_rows(table: Any, system_prompt: str | None) -> list[dict[str, Any]]:
    """Payload columns of a training-set version, with the task's system prompt as a first message."""
    missing = [c for c in ("prompt", "response") if c not in table.column_names]
    if missing and "messages" not in table.column_names:
        raise SelfaugError("the training set has no prompt/response or messages columns", field="train input",
                           found=", ".join(table.column_names))
    columns = [c for c in ROW_COLUMNS if c in table.column_names]
    rows = table.select(columns).to_pylist()
    if system_prompt:
        rows = [with_system_prompt(r, system_prompt) for r in rows]
    return rows


def with_system_prompt(row: dict[str, Any], system_prompt: str) -> dict[str, Any]:
    from selfaug_compiler.train.formatting import row_messages

    messages = row_messages(row)
    if messages and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
    return {"messages": json.dumps(messages, ensure_ascii=False)}


def base_model(ctx: StepContext) -> tuple[str, str | None]:
    """The model to start from: the previous stage's artifact, else the recipe's model."""
    for name in ctx.step.inputs:
        result = ctx.inputs.get(name)
        if result is not None and result.model:
            return result.model, None
    return recipe_model_ref(ctx)


def recipe_model_ref(ctx: StepContext) -> tuple[str, str | None]:
    """The recipe's base model as a loadable ref (a local folder or GGUF file made absolute) and its revision."""
    from selfaug_compiler.models.reference import parse_ref

    spec = ctx.step.params["model"]["spec"]
    parsed = parse_ref(spec["ref"], revision=spec.get("revision"), base_dir=ctx.recipe_dir)
    ref = str(Path(parsed.name).resolve()) if parsed.kind in ("local", "gguf") else spec["ref"]
    return ref, spec.get("revision")


def dataset_ref(ctx: StepContext) -> str:
    for name in ctx.step.inputs:
        result = ctx.inputs.get(name)
        if result is not None and "dataset" in result.datasets:
            return result.datasets["dataset"]
    raise SelfaugError(f"step {ctx.step.name} has no training-set input", field="plan",
                       hint="the train step reads the `dataset` output of a mix step")


def finished_artifact(work_dir: Path) -> StepResult | None:
    from selfaug_compiler.train.job import MODEL_DIR, OUTCOME_FILE, TrainOutcome

    outcome_file = work_dir / OUTCOME_FILE
    if not ((work_dir / MODEL_DIR).is_dir() and outcome_file.is_file()):
        return None
    outcome = TrainOutcome.from_json(outcome_file.read_text())
    return StepResult(model=str(outcome.model_dir), model_fingerprint=outcome.fingerprint, metrics=outcome.metrics)


def execute(ctx: StepContext) -> StepResult:
    from selfaug_compiler.models.completion import prompt_format
    from selfaug_compiler.recipe.schema import TrainSpec
    from selfaug_compiler.train.launch import train_model

    params, speed = ctx.step.params, ctx.step.speed
    done = finished_artifact(ctx.work_dir)
    if done is not None:
        return done
    spec_dict = dict(params["train"])
    for name in ("save_every_steps", "strategy", "gradient_checkpointing"):  # TrainSpec's speed fields
        if name in speed:
            spec_dict[name] = speed[name]
    spec = TrainSpec.model_validate(spec_dict)
    ref = dataset_ref(ctx)
    rows = training_rows(ctx.store.read(ref), params.get("system_prompt"))
    base, revision = base_model(ctx)
    model_spec = params["model"]["spec"]
    chat_template = params.get("chat_template") or model_spec.get("chat_template")
    outcome = train_model(
        base, rows, spec, ctx.work_dir,
        seed=int(params.get("seed", 0)),
        micro_batch_size=int(speed.get("micro_batch_size", spec.batch_size)),
        num_processes=int(speed.get("num_processes", 1)) * int(speed.get("launch", {}).get("num_nodes", 1)),
        torch_threads=speed.get("torch_threads"),
        device=speed.get("device", "auto"),
        dtype=model_spec.get("dtype", "auto"),
        base_revision=revision,
        trust_remote_code=bool(model_spec.get("trust_remote_code", False)),
        chat_template=str(ctx.resolve_path(chat_template)) if chat_template else None,
        prompt_format=prompt_format(model_spec),
        dataset_ref=ref,
        progress=ctx.progress,
        launch=speed.get("launch"),
    )
    return StepResult(model=str(outcome.model_dir), model_fingerprint=outcome.fingerprint, metrics=outcome.metrics)

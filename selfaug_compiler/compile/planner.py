"""Recipe -> Plan: the DAG of steps, with content ids.

Step names are stable and readable (``ingest.gsm8k``, ``generate.self_answer``, ``train``,
``eval.before.arc_easy``, ``eval.after.heldout``, ``report``); in a continual recipe the steps of
stage i get a ``.s<i>`` suffix. ``docs/architecture.md`` ("Plan steps") lists every kind's params.
Only content enters ``params``; speed settings go to ``speed``. Nothing here reads weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from selfaug_compiler.compile.fingerprints import model_param, source_fingerprint
from selfaug_compiler.compile.launch_files import launch_settings
from selfaug_compiler.compile.plan_diagnose import add_diagnose
from selfaug_compiler.compile.plan_interpolate import add_interpolation, interpolate_report_param
from selfaug_compiler.compile.templates import resolve_template, template_hash
from selfaug_compiler.evaluate.catalog import generates_replies, is_lm_eval
from selfaug_compiler.models.chat_templates import chat_template_param
from selfaug_compiler.names import NAME_MAX
from selfaug_compiler.plan import Plan, Step, canonical_json, sha256_hex
from selfaug_compiler.recipe.loader import LoadedRecipe, load_recipe
from selfaug_compiler.recipe.schema import (FieldMap, LmEvalSpec, LmEvalTaskSettings, Recipe, ReplayParams, StageSpec,
                                            TaskSpec, content_view)

STYLE_RETENTION = "style_retention"  # evaluate/style_step.py: needs the tasks' ingest steps


class PlanBuilder:
    def __init__(self, recipe: Recipe, base_dir: Path) -> None:
        self.recipe = recipe
        self.base_dir = base_dir
        self.steps: list[Step] = []
        self.model = model_param(recipe.model, base_dir)
        # train and evaluate load the weights in-process whatever serves generation: the backend stays out of their ids
        self.local_model = {**self.model, "spec": {k: v for k, v in self.model["spec"].items() if k != "backend"}}
        ex = recipe.execution
        threads = {"torch_threads": ex.torch_threads} if ex.torch_threads is not None else {}
        self.gen_speed = {"batch_size": ex.generate_batch_size, "device": ex.device,
                          "num_processes": ex.num_processes, **threads}  # launcher: train steps only
        if recipe.model.backend.kind != "transformers":  # its URL, concurrency, retries: speed (generate/backends)
            self.gen_speed["backend"] = recipe.model.backend.model_dump()
        self.eval_speed = {"batch_size": ex.eval_batch_size, "device": ex.device, **threads}
        # eval.backend (evaluate/eval_backend.py): its kind/served_model/mode are content of evaluate and
        # diagnose steps (the engine's numerics can move scores), its URL/parallelism speed; transformers: no param
        self.eval_backend = content_view(recipe.eval.backend) if recipe.eval.backend.kind != "transformers" else None
        if self.eval_backend is not None:
            self.eval_speed["backend"] = recipe.eval.backend.model_dump()

    def add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    # ------------------------------------------------------------------ building blocks
    def ingest(self, name: str, task: TaskSpec) -> Step:
        params = {"task": content_view(task), "source_fingerprint": source_fingerprint(task.source, self.base_dir)}
        return self.add(Step(name, "ingest", params=params,
                             outputs={"train": f"{task.name}-train", "heldout": f"{task.name}-heldout"}))

    def template(self, name: str) -> dict[str, Any]:
        path = resolve_template(name, self.base_dir)
        return {"template": name, "template_hash": template_hash(path) if path else None}

    def generate(self, purpose: str, sfx: str, inputs: list[str], extra: dict[str, Any], seed: int) -> Step:
        params = {"purpose": purpose, "model": self.model, "seed": seed, **extra,
                  **chat_template_param(self.recipe.model.chat_template, self.base_dir)}
        dp = self.recipe.model.backend.data_parallel_size  # generate/data_parallel.py: k local shard workers
        speed = {**self.gen_speed, **({"data_parallel_size": dp} if dp > 1 else {})}
        return self.add(Step(f"generate.{purpose}{sfx}", "generate", params=params, inputs=inputs,
                             speed=speed, outputs={"dataset": f"{self.recipe.name}-{purpose}{sfx}"}))

    def judge(self, purpose: str, sfx: str, inputs: list[str], params: dict[str, Any], timeout_s: float | None,
              own_model: Any = None) -> Step:
        speed = {**self.gen_speed, **({"timeout_s": timeout_s} if timeout_s is not None else {})}
        if own_model is not None:  # the judge's own model: its backend's speed settings, not the recipe model's
            speed.pop("backend", None)
            if own_model.backend.kind != "transformers":
                speed["backend"] = own_model.backend.model_dump()
        return self.add(Step(f"judge.{purpose}{sfx}", "judge", params={"purpose": purpose, **params}, inputs=inputs,
                             speed=speed, outputs={"dataset": f"{self.recipe.name}-judge_{purpose}{sfx}"}))

    # ------------------------------------------------------------------ per method
    def augment(self, stage: StageSpec, ingest: Step, sfx: str) -> list[str]:
        """Adds the method's generate/judge steps; returns what ``mix`` reads besides the task."""
        aug, task = stage.augment, stage.task
        assert aug is not None
        if aug.method == "sa_sft":
            # The task's rows only size the batch of dialogues (ratio x rows). With n_dialogues set
            # they play no part, so neither the task nor the ratio enters the id: the stages of a
            # continual recipe share one generation instead of making the same dialogues again.
            view = content_view(aug)
            if aug.n_dialogues:
                view.pop("ratio", None)
            gen = self.generate("self_dialogue", sfx, [] if aug.n_dialogues else [ingest.name],
                                {"augment": view, **self.template(aug.template)}, aug.seed)
            return [gen.name]
        if aug.method == "s3ft":
            judge = {"judge": content_view(aug.judge), "answer_type": task.answer_type,
                     "accept_truncated": aug.accept_truncated}
            own = aug.judge.model if aug.judge.kind == "model" else None  # a judge on another model/backend
            if aug.judge.kind == "model":
                judge.update(model=model_param(own, self.base_dir) if own else self.model, **self.template(aug.judge.template),
                             **chat_template_param((own or self.recipe.model).chat_template, self.base_dir))
            answer = self.generate("self_answer", sfx, [ingest.name],
                                   {"sampling": content_view(aug.answer), **self.template(aug.answer_template)}, aug.seed)
            judged = self.judge("self_answer", sfx, [ingest.name, answer.name], judge, aug.judge.timeout_s, own)
            para = self.generate("paraphrase", sfx, [ingest.name, judged.name],
                                 {"sampling": content_view(aug.paraphrase), **self.template(aug.paraphrase_template)}, aug.seed)
            judged_para = self.judge("paraphrase", sfx, [ingest.name, para.name], judge, aug.judge.timeout_s, own)
            return [judged.name, judged_para.name]
        if aug.method == "sdft":
            gen = self.generate("rewrite", sfx, [ingest.name],
                                {"sampling": content_view(aug.sampling), **self.template(aug.template)}, aug.seed)
            judged = self.judge("rewrite", sfx, [ingest.name, gen.name],
                                {"leak_phrases": list(aug.leak_phrases), "check_final_number": aug.check_final_number,
                                 "answer_type": task.answer_type, "accept_truncated": aug.accept_truncated}, None)
            return [judged.name]
        if aug.method == "replay":
            return [self.ingest(f"ingest.replay{sfx}", _replay_task(aug)).name]
        return []

    def stage(self, i: int, stage: StageSpec, sfx: str, previous_train: str | None) -> tuple[Step, Step]:
        assert stage.augment is not None and stage.train is not None
        ingest = self.ingest(f"ingest.{stage.task.name}{sfx}", stage.task)
        extra = self.augment(stage, ingest, sfx)
        mix = self.add(Step(f"mix{sfx}", "mix", inputs=[ingest.name, *extra],
                            params={"method": stage.augment.method, "augment": content_view(stage.augment),
                                    "task": stage.task.name, "seed": self.recipe.seed},
                            outputs={"dataset": f"{self.recipe.name}-mix{sfx}"}))
        ex = self.recipe.execution
        train = self.add(Step(f"train{sfx}", "train", inputs=[mix.name] + ([previous_train] if previous_train else []),
                              params={"train": content_view(stage.train), "model": self.local_model, "seed": self.recipe.seed,
                                      "system_prompt": stage.task.system_prompt,
                                      "chat_template": self.recipe.model.chat_template,
                                      **chat_template_param(self.recipe.model.chat_template, self.base_dir)},
                              speed={"micro_batch_size": ex.micro_batch_size, "num_processes": ex.num_processes,
                                     "device": ex.device, "save_every_steps": stage.train.save_every_steps,
                                     "strategy": stage.train.strategy,
                                     "gradient_checkpointing": stage.train.gradient_checkpointing,
                                     "launch": launch_settings(self.recipe, stage.train, f"train{sfx}"),
                                     **({"torch_threads": ex.torch_threads} if ex.torch_threads is not None else {})},
                              outputs={"model": f"{self.recipe.name}-{stage.task.name}{sfx}"}))
        return ingest, train

    # ------------------------------------------------------------------ evaluation
    def eval_params(self, bench: str) -> dict[str, Any]:
        spec = self.recipe.eval
        params: dict[str, Any] = {"benchmark": bench, "limit": spec.limit, "seed": spec.seed,
                                  "max_new_tokens": spec.max_new_tokens}
        if is_lm_eval(bench):
            params["lm_eval"] = lm_eval_param(bench, spec.lm_eval, self.base_dir)
        elif spec.stop and generates_replies(bench, {c.name: c.type for c in spec.custom}):
            params["stop"] = list(spec.stop)  # added field: only recipes that set it get it (registry.with_stop)
        if bench in spec.packaged:  # few-shot / chat settings: only recipes that set them get the param
            params["prompt"] = content_view(spec.packaged[bench])
        for custom in spec.custom:
            if custom.name == bench:
                params["custom"] = content_view(custom)
                params["file_fingerprint"] = source_fingerprint_path(self.base_dir / custom.path)
        return params

    def evaluate(self, name: str, bench: str, inputs: list[str], answer_type: str | None = None,
                 replicate: dict[str, Any] | None = None) -> Step:
        params = self.eval_params(bench)
        if answer_type is not None:
            params["answer_type"] = answer_type
        if replicate is not None:
            params["replicate"] = replicate
        # After-evals carry the base model too: its dtype/template settings apply to the trained
        # artifact, so before and after are scored the same way.
        params["model"] = self.local_model
        if self.eval_backend is not None:
            params["backend"] = self.eval_backend
        return self.add(Step(name, "evaluate", params=params, inputs=inputs, speed=dict(self.eval_speed),
                             outputs={"results": name}))

    def build(self) -> Plan:
        stages = self.recipe.stage_list()
        continual = self.recipe.stages is not None
        spec = self.recipe.eval
        general = [b for b in [*spec.retention, *spec.in_domain] if b != "heldout"]
        general += [c.name for c in spec.custom if c.name not in general]
        # (step name, benchmark label, category, stage): stage 0 = before fine-tuning, k = after stage k.
        evals: list[dict[str, Any]] = []

        def add_eval(name: str, bench: str, label: str, inputs: list[str], stage_no: int, answer_type: str | None = None) -> None:
            step = self.evaluate(name, bench, inputs, answer_type=answer_type)
            category = "in_domain" if bench in spec.in_domain else "retention"
            evals.append({"step": step.name, "benchmark": label, "category": category, "stage": stage_no})

        # style_retention derives its markers from every task's training data: before and after
        # evals of a recipe read the same ingest steps, so they score with the same markers.
        task_ingests = [f"ingest.{s.task.name}{f'.s{i}' if continual else ''}" for i, s in enumerate(stages)]

        def eval_inputs(bench: str, *others: str) -> list[str]:
            return [*task_ingests, *others] if bench == STYLE_RETENTION else list(others)

        for b in general:
            add_eval(f"eval.before.{step_part(b)}", b, b, eval_inputs(b), 0)
        if spec.noise_floor:  # the base model scored again: how far numerics alone move each score
            for b in general:
                step = self.evaluate(f"eval.noise.{step_part(b)}", b, eval_inputs(b), replicate=noise_replicate(spec))
                evals.append({"step": step.name, "benchmark": b, "stage": 0, "role": "noise",
                              "category": "in_domain" if b in spec.in_domain else "retention"})
        ingests: list[Step] = []
        previous: str | None = None
        for i, stage in enumerate(stages):
            sfx = f".s{i}" if continual else ""
            ingest, train = self.stage(i, stage, sfx, previous)
            ingests.append(ingest)
            previous = train.name
            if _holds_out(spec.in_domain, stage):
                hsfx = f".{stage.task.name}" if continual else ""
                add_eval(f"eval.before.heldout{hsfx}", "heldout", f"heldout{hsfx}", [ingest.name], 0,
                         stage.task.answer_type)
            for b in general:
                add_eval(f"eval.after.{step_part(b)}{sfx}", b, b, eval_inputs(b, train.name), i + 1)
            if "heldout" in spec.in_domain:  # every stage's held-out tasks after this stage
                for j, seen in enumerate(ingests):
                    if not _holds_out(spec.in_domain, stages[j]):
                        continue
                    hsfx = f".{stages[j].task.name}" if continual else ""
                    add_eval(f"eval.after.heldout{hsfx}{sfx}", "heldout", f"heldout{hsfx}",
                             [seen.name, train.name], i + 1, stages[j].task.answer_type)
        diagnose: list[str] = []
        if previous is not None:  # theta_alpha steps and their evals; KL to base (compile/plan_*.py)
            add_interpolation(self, previous, evals, len(stages))
            diagnose = add_diagnose(self, ingests[-1].name, previous, stages[-1].task.split.heldout)
        self.add(Step("report", "report", inputs=[e["step"] for e in evals] + diagnose,
                      params={"recipe": self.recipe.name, "title": self.recipe.name, "seed": self.recipe.seed,
                              "stages": [s.task.name for s in stages],
                              "benchmarks": general + (["heldout"] if "heldout" in spec.in_domain else []),
                              "evals": evals, **interpolate_report_param(self)},
                      outputs={"report": self.recipe.name}))
        plan = Plan(recipe_name=self.recipe.name, recipe_hash=recipe_hash(self.recipe), steps=self.steps,
                    meta={"stages": [s.task.name for s in stages], "model_ref": self.recipe.model.ref,
                          "store": self.recipe.store.path})
        plan.assign_ids()
        return plan


# Reversed item order and a prime batch size: other batch compositions and padding than the
# regular evaluation (whose batch size is a power of two in every shipped recipe).
# `eval.noise_batch_size` (default 7) changes the batch size only: a generation batch costs about
# the same whatever its size on a CPU, so 7 makes a generative replica ~4x dearer than batch 32.
NOISE_REPLICATE = {"batch_size": 7, "order": "reversed"}


def noise_replicate(spec: Any) -> dict[str, Any]:
    return {**NOISE_REPLICATE, "batch_size": int(spec.noise_batch_size)}


def step_part(bench: str) -> str:
    """A benchmark name as part of a step name (which names folders): ``lm_eval:x/y.yaml`` ->
    ``lm_eval_x_y.yaml``; the report keeps the name as written."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", bench)


def lm_eval_param(bench: str, spec: LmEvalSpec, base_dir: Path) -> dict[str, Any]:
    """An lm_eval: evaluate step's content: its settings (few-shot, chat template, ...), the
    include path, the lm_eval version and a hash of the task's local files (never batch size)."""
    from selfaug_compiler.errors import SelfaugError
    from selfaug_compiler.evaluate.lm_eval_spec import LmEvalProblem, locate, static_fingerprint

    try:
        located = locate(bench, base_dir=base_dir, include_path=list(spec.include_path))
    except LmEvalProblem as problem:
        raise SelfaugError(problem.message, field="eval", expected=problem.expected, hint=problem.hint) from None
    settings = content_view(spec.tasks.get(bench, LmEvalTaskSettings()))
    return {"settings": settings, "include_path": list(spec.include_path), **static_fingerprint(located)}


def _holds_out(in_domain: list[str], stage: StageSpec) -> bool:
    """Whether the stage's held-out split is evaluated (it needs held-out rows)."""
    return "heldout" in in_domain and stage.task.split.heldout > 0


def _replay_task(aug: ReplayParams) -> TaskSpec:
    name = getattr(aug.source, "name", None) or "replay"
    # a task name (and so dataset names) from any source name: other characters become "_"
    return TaskSpec(name=re.sub(r"[^A-Za-z0-9_.-]", "_", f"replay-{name}")[:NAME_MAX], source=aug.source,
                    fields=FieldMap(**aug.fields.model_dump()), answer_type="text")


def source_fingerprint_path(path: Path) -> str:
    from selfaug_compiler.compile.fingerprints import file_sha256

    return file_sha256(path) if path.is_file() else "missing"


def recipe_hash(recipe: Recipe) -> str:
    return sha256_hex(canonical_json(content_view(recipe)))


def build_plan(loaded: LoadedRecipe, out_dir: Path | None = None) -> Plan:
    """The plan of a loaded (and checked) recipe; ``recipe_path`` is stored relative to ``out_dir``."""
    plan = PlanBuilder(loaded.recipe, loaded.base_dir).build()
    if out_dir is not None:
        plan.recipe_path = os.path.relpath(loaded.path.resolve(), Path(out_dir).resolve())
    else:
        plan.recipe_path = str(loaded.path)
    return plan


def plan_checked_recipe(path: Path, overrides: list[str]) -> tuple[Plan, LoadedRecipe]:
    """Load a recipe, run every `selfaug validate` check on it (a failure raises SelfaugError,
    before any model work) and plan it."""
    from selfaug_compiler.compile.checks import check_recipe
    from selfaug_compiler.errors import SelfaugError

    loaded = load_recipe(path, overrides)
    report = check_recipe(loaded)
    if not report.ok:
        raise SelfaugError(problems=report.errors)
    return build_plan(loaded), loaded

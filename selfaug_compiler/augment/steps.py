"""The ``generate``, ``judge`` and ``mix`` step executors (see docs/architecture.md, "Plan steps").

Each one returns its existing version when the step id already has one (no model work), stages
generated rows batch by batch (a killed step resumes where it stopped), and commits one version
with ``step_id`` set. The method logic lives in plain functions in ``sa_sft``, ``s3ft``,
``sdft``, ``replay`` and ``mix``.
"""

from __future__ import annotations

from typing import Any

from selfaug_compiler.augment import common as C
from selfaug_compiler.errors import StepFailed
from selfaug_compiler.runtime import StepContext, StepResult


def _template(ctx: StepContext) -> tuple[str, str | None]:
    from selfaug_compiler.augment.prompts import template_hash

    params = ctx.step.params
    name = params.get("template") or (params.get("augment") or {}).get("template")
    return name, params.get("template_hash") or template_hash(name, ctx.recipe_dir)


def _sampling(params: dict[str, Any]) -> dict[str, Any]:
    """The step's sampling settings that ``SamplingParams`` takes (the rows' ``sampling`` provenance)."""
    from selfaug_compiler.generate.engine import SAMPLING_KEYS

    sampling = params.get("sampling") or (params.get("augment") or {}).get("sampling") or {}
    return {k: sampling[k] for k in SAMPLING_KEYS if sampling.get(k) is not None}


def _batch_size(ctx: StepContext) -> int:
    return int(ctx.step.speed.get("batch_size", ctx.step.speed.get("generate_batch_size", 16)))


# ----------------------------------------------------------------------------- generate
def execute_generate(ctx: StepContext) -> StepResult:
    cached = C.cached_result(ctx)
    if cached is not None:
        return cached
    purpose = ctx.step.params.get("purpose")
    runners = {"self_dialogue": _generate_dialogues, "self_answer": _generate_answers,
               "paraphrase": _generate_answers, "rewrite": _generate_answers}
    if purpose not in runners:
        raise StepFailed(ctx.step.name, f"unknown generate purpose {purpose!r}")
    if ctx.shard is None:
        from selfaug_compiler.generate.data_parallel import data_parallel_size, run_workers
        from selfaug_compiler.generate.shards import collect
        from selfaug_compiler.shard_run import SHARDABLE

        k = data_parallel_size(ctx.step.speed)  # model.backend.data_parallel_size: k local shard workers
        if k > 1 and purpose in SHARDABLE:
            run_workers(ctx, k)
        sharded = collect(ctx.work_dir, ctx.step.name)  # the coordinator: every shard staged its rows
        if sharded is not None:
            return C.commit_rows(ctx, sharded, from_stage=False, metrics={"sharded_rows": len(sharded)},
                                 message=f"generate {purpose} (shards)")
    stats = runners[purpose](ctx)
    if ctx.shard is not None:
        from selfaug_compiler.generate.shards import mark_done

        mark_done(ctx.work_dir, ctx.shard, stats["resumed_rows"] + stats["generated_rows"])
        return StepResult(metrics={**stats, "shard": str(ctx.shard)})
    return C.commit_rows(ctx, None, from_stage=True, metrics=stats, message=f"generate {purpose}")


def _generate_answers(ctx: StepContext) -> dict[str, Any]:
    """self_answer, paraphrase and rewrite: one generation per (selected) task row."""
    from selfaug_compiler.augment import s3ft, sdft

    params, purpose = ctx.step.params, ctx.step.params["purpose"]
    refs = C.input_refs(ctx)
    task_rows = C.read_rows(ctx, refs["task"])
    template, thash = _template(ctx)
    seed = int(params.get("seed", 0))
    if purpose == "self_answer":
        items = s3ft.answer_items(task_rows, template, ctx.recipe_dir, seed)
    elif purpose == "paraphrase":
        items = s3ft.paraphrase_items(task_rows, C.read_rows(ctx, refs["judge.self_answer"]), template,
                                      ctx.recipe_dir, seed)
    else:
        items = sdft.rewrite_items(task_rows, template, ctx.recipe_dir, seed)
    source = {"self_answer": "self", "paraphrase": "paraphrase", "rewrite": "rewrite"}[purpose]
    sampling = _sampling(params)
    todo, already = C.pending(ctx, items)
    if ctx.shard is not None:
        ctx.store.close()  # a shard reads its inputs, then holds no store connection while it generates
    if not todo:
        return {"resumed_rows": already, "generated_rows": 0, "generated_tokens": 0}
    loaded = C.load_step_model(ctx)
    to_row = lambda item, gen: s3ft.generated_row(item, gen, source=source, loaded=loaded, step_id=ctx.step.id,  # noqa: E731
                                                  template_hash=thash, sampling=sampling)
    return C.generate_staged(ctx, loaded, items, sampling, to_row)


def _generate_dialogues(ctx: StepContext) -> dict[str, Any]:
    """SA-SFT: dialogues are built in chunks of one batch; each finished chunk is staged."""
    from selfaug_compiler.augment import sa_sft
    from selfaug_compiler.generate.backends.base import BackendError
    from selfaug_compiler.generate.backends.steps import backend_of, step_failure, with_backend_meta
    from selfaug_compiler.generate.engine import SamplingParams

    params = ctx.step.params
    aug = params.get("augment") or {}
    n_task_rows = 0 if aug.get("n_dialogues") else len(C.read_rows(ctx, C.input_refs(ctx)["task"]))
    topics = sa_sft.load_topics(aug.get("topics"), ctx.recipe_dir)
    seed = int(params.get("seed", 0))
    plan = sa_sft.dialogue_plan(sa_sft.dialogue_count(aug.get("n_dialogues"), float(aug.get("ratio", 0.5)),
                                                      n_task_rows), topics, seed)
    done = set(ctx.store.staged(ctx.step.id)["key"].to_pylist())
    todo = [p for p in plan if p[0] not in done]
    stats: dict[str, Any] = {"resumed_rows": len(plan) - len(todo), "generated_rows": 0}
    if todo:
        template, thash = _template(ctx)
        sampling = _sampling(params) or {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256}
        loaded = C.load_step_model(ctx)
        sp = SamplingParams(**sampling)
        size = _batch_size(ctx)
        backend = backend_of(loaded)
        gen_fn = lambda prompts, seeds: backend.generate(prompts, sp, seeds=seeds, batch_size=size, progress=False)  # noqa: E731
        ctx.progress(stats["resumed_rows"], len(plan), unit="dialogues")
        for start in range(0, len(todo), size):
            try:
                states = sa_sft.run_dialogues(todo[start:start + size], turns=int(aug.get("turns", 1)), template=template,
                                              recipe_dir=ctx.recipe_dir, seed=seed, generate_fn=gen_fn)
            except BackendError as e:
                step_failure(ctx, e, stats)  # staged chunks are kept: the same command resumes
            rows = [with_backend_meta(sa_sft.dialogue_row(
                s, loaded=loaded, step_id=ctx.step.id, template_hash=thash, sampling=sampling,
                max_repetition=float(aug.get("max_repetition", 0.3)), accept_truncated=bool(aug.get("accept_truncated"))),
                loaded, None) for s in states]
            ctx.store.stage(ctx.step.id, rows)
            stats["generated_rows"] += len(rows)
            ctx.progress(stats["resumed_rows"] + stats["generated_rows"], len(plan), unit="dialogues")
    reasons = [C.load_meta(m).get("excluded") for m in ctx.store.staged(ctx.step.id)["meta"].to_pylist()]
    stats.update(excluded=sum(1 for r in reasons if r), refused_truncated=reasons.count(C.TRUNCATED))
    limit = (_sampling(params) or {}).get("max_new_tokens", 256)
    print(f"selfaug: {ctx.step.name}: {len(reasons)} dialogues, {stats['excluded']} excluded ({stats['refused_truncated']} "
          f"of them for a turn cut off at max_new_tokens={limit})", flush=True)
    return stats


# ----------------------------------------------------------------------------- judge
def execute_judge(ctx: StepContext) -> StepResult:
    cached = C.cached_result(ctx)
    if cached is not None:
        return cached
    from selfaug_compiler.augment import s3ft, sdft
    from selfaug_compiler.judges.verdicts import judge_items

    params, purpose = ctx.step.params, ctx.step.params.get("purpose")
    refs = C.input_refs(ctx)
    rows = C.read_rows(ctx, refs[f"generate.{purpose}"])
    if purpose == "rewrite":
        name = sdft.JUDGE_NAME
        judge_fn = lambda some: sdft.judge_rewrites(some, params, ctx.step.id)  # noqa: E731
    else:
        judge = dict(params.get("judge") or {"kind": "numeric"})
        name = judge.get("kind", "numeric")
        if judge.get("kind") == "model" and params.get("template"):
            judge["template"] = params["template"]

        def judge_fn(some: list[dict]) -> list[dict]:
            loaded = C.load_step_model(ctx) if judge.get("kind") == "model" and some else None
            verdicts = judge_items(s3ft.judge_inputs(some), judge, loaded=loaded, recipe_dir=ctx.recipe_dir,
                                   batch_size=_batch_size(ctx), timeout_s=ctx.step.speed.get("timeout_s"),
                                   progress=ctx.progress)
            from selfaug_compiler.models.completion import row_template

            return s3ft.with_verdicts(some, verdicts, ctx.step.id, row_template(loaded) if loaded is not None else None)
    judged, refused = C.judge_complete(rows, judge_fn, accept_truncated=bool(params.get("accept_truncated")),
                                       judge_name=name, step_id=ctx.step.id)
    stats = {**s3ft.acceptance(judged), "refused_truncated": refused,
             "truncated": sum(1 for r in rows if C.is_truncated(r))}
    print(f"selfaug: {ctx.step.name}: accepted {stats['accepted']}/{stats['judged']} "
          f"({100 * stats['acceptance_rate']:.1f}%) {purpose} rows" + _truncation_note(stats, rows), flush=True)
    return C.commit_rows(ctx, judged, from_stage=False, metrics=stats, message=f"judge {purpose}")


def _truncation_note(stats: dict[str, Any], rows: list[dict]) -> str:
    if not stats["truncated"]:
        return ""
    limit = C.load_meta(rows[0].get("sampling")).get("max_new_tokens") if rows else None
    what = "refused" if stats["refused_truncated"] else "accepted (accept_truncated)"
    return f"; {stats['truncated']} cut off at max_new_tokens={limit}, {what}"


# ----------------------------------------------------------------------------- mix
def execute_mix(ctx: StepContext) -> StepResult:
    cached = C.cached_result(ctx)
    if cached is not None:
        return cached
    from selfaug_compiler.augment.mix import mix_rows

    params = ctx.step.params
    refs = C.input_refs(ctx)
    task_rows = C.read_rows(ctx, refs["task"])
    parts = {role: C.read_rows(ctx, ref) for role, ref in refs.items() if role != "task"}
    augment = params.get("augment") or {}
    method = params.get("method") or augment.get("method", "none")
    rows, stats = mix_rows(method, augment, task_rows, parts, seed=int(params.get("seed", 0)), step_id=ctx.step.id)
    if not rows:
        raise StepFailed(ctx.step.name, "the training set is empty after generation and judging "
                         f"(task rows: {len(task_rows)}; " + ", ".join(f"{r}: {len(v)}" for r, v in parts.items()) + ")",
                         hint="check the task's split and the judge settings (`selfaug data show` on the inputs); "
                              "nothing was committed, and a re-run after the fix reuses the earlier steps")
    total = len(rows)
    shares = ", ".join(f"{src} {n} ({100 * n / total:.1f}%)" for src, n in sorted(stats["by_source"].items()))
    refused = ", ".join(f"{role.split('.')[-1]} {n}" for role, n in sorted(stats["refused_truncated"].items()))
    note = f"; refused as cut off at max_new_tokens: {refused}" if refused else ""
    if stats.get("dialogues_wanted", 0) > stats.get("self_dialogue", 0):
        note += (f"; only {stats['self_dialogue']} of the {stats['dialogues_wanted']} self-dialogues augment.ratio asks "
                 f"for were usable (raise augment.n_dialogues above {stats['dialogues_wanted']} to make up for refused ones)")
    print(f"selfaug: {ctx.step.name}: {len(rows)} training rows: {shares}{note}", flush=True)
    return C.commit_rows(ctx, rows, from_stage=False, metrics=stats, message=f"mix {method}")

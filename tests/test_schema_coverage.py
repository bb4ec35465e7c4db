"""No recipe setting is silently ignored (issue 13.3).

Walks every leaf field of ``Recipe`` (every variant of every union, stages included) and flips it
on a base recipe that uses its section. A content field is consumed when the flip changes a plan
step id; a speed field when it changes an emitted file other than plan.json (a launch file, the
SLURM script) or a step's ``speed`` entry that the step's executor reads (the key appears in the
package's run-time code). Fields that drive neither are listed in ``METADATA`` with the reason.
The plan is built from the ``Recipe`` object (``PlanBuilder``), no model is loaded.
"""

from __future__ import annotations

import copy
import json
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from selfaug_compiler.compile.emit import render_files
from selfaug_compiler.compile.planner import PlanBuilder
from selfaug_compiler.recipe.schema import Recipe, is_speed_field

PACKAGE = Path(__file__).parents[1] / "selfaug_compiler"

METADATA = {
    "name": "the recipe's name: labels outputs (dataset names, job name, report title), never what is computed",
    "task.name": "the task's label: names datasets and steps; the data is given by task.source",
    "store.path": "where `selfaug run` opens the store (cli/run_cmds.py), not part of any plan",
    "task.source[FileSource].kind": "the union's tag; switching sources is covered by each variant's fields",
    "task.source[PackagedSource].kind": "the union's tag",
    "task.source[HFSource].kind": "the union's tag",
    "augment[NoAugment].method": "the union's tag; each method's own fields are walked on its variant",
    "augment[SaSftParams].method": "the union's tag",
    "augment[S3ftParams].method": "the union's tag",
    "augment[SdftParams].method": "the union's tag",
    "augment[ReplayParams].method": "the union's tag",
    "augment[ReplayParams].source[FileSource].kind": "the union's tag",
    "augment[ReplayParams].source[PackagedSource].kind": "the union's tag",
    "augment[ReplayParams].source[HFSource].kind": "the union's tag",
}

# Values to flip to where the automatic choice (next literal, not, +1, x0.5) would be invalid.
FLIPS: dict[str, Any] = {
    "interpolate.alphas": [0.25, 0.5],
    "model.ref": "models/m", "model.revision": "v2", "model.chat_template": "chat.jinja",
    "task.source[FileSource].path": "other.jsonl", "task.source[FileSource].encoding": "latin-1",
    "task.source[PackagedSource].name": "sst2", "task.source[HFSource].path": "org/other",
    "task.source[HFSource].name": "cfg", "task.source[HFSource].split": "test", "task.source[HFSource].revision": "v2",
    "task.fields.prompt": "q", "task.fields.response": "a", "task.fields.id": "key",
    "task.split.train": 100, "task.system_prompt": "Be brief.",
    "augment[SaSftParams].n_dialogues": 10, "augment[SaSftParams].template": "prompts/custom_dialogue.j2",
    "augment[SaSftParams].topics": ["cooking"], "augment[SaSftParams].sampling.stop": ["\n\n"],
    "augment[S3ftParams].answer.stop": ["\n\n"], "augment[S3ftParams].paraphrase.stop": ["\n\n"],
    "augment[SdftParams].sampling.stop": ["\n\n"],
    "augment[S3ftParams].judge.template": "prompts/custom_judge.j2",
    "augment[S3ftParams].answer_template": "prompts/custom_answer.j2",
    "augment[S3ftParams].paraphrase_template": "prompts/custom_paraphrase.j2",
    "augment[SdftParams].template": "prompts/custom_rewrite.j2", "augment[SdftParams].leak_phrases": ["the answer"],
    "augment[ReplayParams].source[FileSource].path": "other.jsonl",
    "augment[ReplayParams].source[FileSource].encoding": "latin-1",
    "augment[ReplayParams].source[PackagedSource].name": "boolq",
    "augment[ReplayParams].source[HFSource].path": "org/other", "augment[ReplayParams].source[HFSource].name": "cfg",
    "augment[ReplayParams].source[HFSource].split": "test", "augment[ReplayParams].source[HFSource].revision": "v2",
    "augment[ReplayParams].fields.prompt": "q", "augment[ReplayParams].fields.response": "a",
    "augment[ReplayParams].fields.id": "key",
    "train.lora.target_modules": ["q_proj", "k_proj"], "train.freeze.layers": "0-3",
    "eval.retention": ["piqa"], "eval.in_domain": [],
    "eval.custom": [{"name": "mine", "path": "bench.jsonl"}],
    "eval.limit": None, "eval.lm_eval.include_path": ["tasks"], "eval.stop": ["\n\n"],
    "eval.lm_eval.tasks": {"lm_eval:arc_easy": {"num_fewshot": 5}},
    "eval.packaged": {"arc_easy": {"num_fewshot": 1}},
    "execution.torch_threads": 3, "execution.slurm.partition": "gpu", "execution.slurm.time": "01:00:00",
    "execution.num_nodes": 2,
    "model.backend.kind": "transformers",
}
for _prefix in ("model.backend", "augment[S3ftParams].judge.model.backend", "eval.backend"):
    FLIPS.update({f"{_prefix}.served_model": "other-model", f"{_prefix}.base_url": "http://127.0.0.1:9/v1",
                  f"{_prefix}.api_key_env": "OTHER_KEY", f"{_prefix}.max_model_len": 2048,
                  f"{_prefix}.data_parallel_size": 2})  # speed: k local shard workers (generate/data_parallel.py)
FLIPS.update({"augment[S3ftParams].judge.model.ref": "models/m", "augment[S3ftParams].judge.model.revision": "v2",
              "augment[S3ftParams].judge.model.chat_template": "chat.jinja",
              "augment[S3ftParams].judge.model.backend.kind": "transformers", "eval.backend.kind": "transformers"})
# Extra settings a flip needs to be valid or to reach the part that reads it (path -> overrides).
CONTEXT: dict[str, dict[str, Any]] = {
    "train.lora": {"train.method": "lora"}, "train.freeze": {"train.method": "freeze"},
    "execution.num_nodes": {"execution.launcher": "slurm"}, "execution.slurm": {"execution.launcher": "slurm"},
    "execution.generate_batch_size": {"augment": {"method": "sa_sft"}}, "train.loss.beta": {"train.loss.kind": "kl"}, "eval.lm_eval.tasks": {"eval.retention": ["lm_eval:arc_easy"]},
    "eval.lm_eval.include_path": {"eval.retention": ["lm_eval:arc_easy"]},
    "eval.noise_batch_size": {"eval.noise_floor": True},
    # a served backend: generate steps exist (s3ft) and carry the backend's speed settings
    "model.backend": {"augment": {"method": "s3ft"}, "model.backend": {"kind": "openai"}},
    # data parallelism runs in-process backends: the generate steps get speed["data_parallel_size"]
    "model.backend.data_parallel_size": {"model.backend": {"kind": "transformers"}},
    "augment[S3ftParams].judge.model": {"augment.judge.kind": "model",
                                        "augment.judge.model": {"ref": "packaged:smollm2-135m-instruct",
                                                                "backend": {"kind": "openai"}}},
    "interpolate": {"interpolate": {"alphas": [0.5]}},
    "eval.backend": {"eval.backend": {"kind": "vllm"}},  # evaluate steps carry a non-default eval backend
    "diagnose": {"diagnose": {"kl_to_base": True}, "task.split.heldout": 8},
}
VARIANTS = {  # union variant -> how the base recipe selects it
    "task.source[FileSource]": {"task.source": {"kind": "file", "path": "data.jsonl"}},
    "task.source[HFSource]": {"task.source": {"kind": "hf", "path": "org/data"}},
    "augment[SaSftParams]": {"augment": {"method": "sa_sft"}},
    "augment[S3ftParams]": {"augment": {"method": "s3ft"}},
    "augment[SdftParams]": {"augment": {"method": "sdft"}},
    "augment[ReplayParams]": {"augment": {"method": "replay", "source": {"kind": "packaged", "name": "sst2"},
                                          "fields": {"prompt": "sentence", "response": "label"}}},
    "augment[ReplayParams].source[FileSource]": {"augment.source": {"kind": "file", "path": "data.jsonl"}},
    "augment[ReplayParams].source[HFSource]": {"augment.source": {"kind": "hf", "path": "org/data"}},
}


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models(a)]


def leaves(model: type[BaseModel] = Recipe, prefix: str = "") -> list[tuple[str, type[BaseModel], str]]:
    """(schema path with [Variant] markers, owning model, field name) of every leaf field."""
    out = []
    for name, info in model.model_fields.items():
        models = _models(info.annotation)
        if models and typing.get_origin(info.annotation) not in (list, dict) and name != "stages":
            for m in models:
                tag = f"[{m.__name__}]" if len(models) > 1 else ""
                out += leaves(m, f"{prefix}{name}{tag}.")
        elif name != "stages":
            out.append((prefix + name, model, name))
    return out


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[last] = value


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for p in dotted.split("."):
        tree = tree.get(p, {}) if isinstance(tree, dict) else {}
    return tree


def _flip(model: type[BaseModel], name: str, current: Any) -> Any:
    info = model.model_fields[name]
    annotation = info.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return next(c for c in typing.get_args(annotation) if c != current)
    if isinstance(current, bool) or annotation is bool:
        return not current
    bounds = {type(m).__name__: m for m in info.metadata}
    le = getattr(bounds.get("Le"), "le", None) or getattr(bounds.get("Lt"), "lt", None)
    if isinstance(current, int) or annotation is int or int in args:
        new = (current or 0) + 1
        return new if le is None or new <= le else current - 1
    if isinstance(current, float):
        return current * 0.5 if current else 0.1
    raise AssertionError(f"{model.__name__}.{name}: add a value to FLIPS")


def _base_dir(tmp: Path) -> Path:
    (tmp / "data.jsonl").write_text('{"question": "1+1?", "answer": "2", "key": "a", "q": "x", "a": "y"}\n')
    (tmp / "other.jsonl").write_text('{"question": "2+2?", "answer": "4"}\n')
    (tmp / "bench.jsonl").write_text('{"query": "q", "choices": ["a", "b"], "gold": 0}\n')
    (tmp / "chat.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    (tmp / "models" / "m").mkdir(parents=True)
    (tmp / "models" / "m" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp / "prompts").mkdir()
    for n in ("custom_dialogue", "custom_judge", "custom_answer", "custom_paraphrase", "custom_rewrite"):
        (tmp / "prompts" / f"{n}.j2").write_text(n + " {{ question }}")
    (tmp / "tasks").mkdir()
    return tmp


def _compile(tree: dict[str, Any], base_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    recipe = Recipe.model_validate(tree)
    plan = PlanBuilder(recipe, base_dir).build()
    plan.recipe_path = "recipe.yaml"
    files = render_files(plan, recipe)
    return ({s.name: s.id for s in plan.steps}, {s.name: (s.kind, s.speed) for s in plan.steps},
            {k: v for k, v in files.items() if k != "plan.json"})


def _runtime_source() -> str:
    return "\n".join(p.read_text() for p in PACKAGE.rglob("*.py") if "compile" not in p.parts and "recipe" not in p.parts)


BASE = {"name": "cov", "task": {"name": "gsm8k", "source": {"kind": "packaged", "name": "gsm8k"},
                                "fields": {"prompt": "question", "response": "answer"}, "split": {"train": 40, "heldout": 8}},
        "eval": {"retention": ["arc_easy"], "in_domain": ["heldout"]}}
LEAVES = [leaf for leaf in leaves() if leaf[0] not in METADATA]


def test_every_field_is_walked_or_metadata() -> None:
    paths = {p for p, _, _ in leaves()}
    assert "train.strategy" in paths and "execution.num_nodes" in paths and "train.lora.load_in_4bit" in paths
    assert set(METADATA) <= paths, set(METADATA) - paths
    assert set(FLIPS) <= paths, set(FLIPS) - paths


@pytest.mark.parametrize("path", [p for p, _, _ in LEAVES])
def test_field_is_consumed(path: str, tmp_path: Path) -> None:
    model, name = next((m, n) for p, m, n in LEAVES if p == path)
    base_dir = _base_dir(tmp_path)
    tree = copy.deepcopy(BASE)
    for variant, settings in VARIANTS.items():
        if path.startswith(variant + "."):
            for k, v in settings.items():
                _set(tree, k, copy.deepcopy(v))
    for prefix, settings in CONTEXT.items():
        if path == prefix or path.startswith(prefix + "."):
            for k, v in settings.items():
                _set(tree, k, copy.deepcopy(v))
    plain = _plain(path)
    before = _compile(tree, base_dir)
    current = _get(Recipe.model_validate(tree).model_dump(mode="json"), plain)
    _set(tree, plain, copy.deepcopy(FLIPS[path]) if path in FLIPS else _flip(model, name, current))
    after = _compile(tree, base_dir)
    if not is_speed_field(model, name):
        assert before[0] != after[0], f"{path}: a content field that changes no step id (nothing reads it)"
        return
    assert before[0] == after[0], f"{path}: a speed field that changes step ids"
    if before[2] != after[2]:
        return  # an emitted launch file changed
    source = _runtime_source()
    changed = {key for step, (kind, speed) in after[1].items()
               for key in set(speed) | set(before[1].get(step, ("", {}))[1])
               if speed.get(key) != before[1].get(step, ("", {}))[1].get(key)}
    assert changed, f"{path}: a speed field that changes no emitted file and no step's speed settings"
    unread = {k for k in changed if f'"{k}"' not in source}
    assert not unread, f"{path}: lands in step speed keys {sorted(unread)} that no run-time code reads"


def _plain(path: str) -> str:
    import re

    return re.sub(r"\[\w+\]", "", path)


def test_stage_sections_are_consumed(tmp_path: Path) -> None:
    """``stages`` holds the same task/augment/train classes walked above; a stage's own section is read
    for that stage: its content changes that stage's ids, its launch settings give it its own files."""
    base_dir = _base_dir(tmp_path)
    task = BASE["task"]
    tree = {"name": "cov", "eval": BASE["eval"],
            "stages": [{"task": task}, {"task": {**task, "name": "again"}, "train": {"lr": 1e-4}}]}
    ids, _, files = _compile(copy.deepcopy(tree), base_dir)
    tree["stages"][1]["train"]["lr"] = 2e-4
    ids2, _, _ = _compile(copy.deepcopy(tree), base_dir)
    changed = {n for n in ids if ids[n] != ids2.get(n)}
    assert "train.s1" in changed and "train.s0" not in changed
    tree["stages"][1]["train"]["strategy"] = "fsdp"
    ids3, speed3, files3 = _compile(copy.deepcopy(tree), base_dir)
    assert ids3 == ids2 and "accelerate_config.s1.yaml" in files3 and "accelerate_config.s1.yaml" not in files
    assert speed3["train.s1"][1]["launch"]["config"] == "accelerate_config.s1.yaml"
    assert speed3["train.s0"][1]["launch"]["config"] == "accelerate_config.yaml"

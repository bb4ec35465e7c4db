"""The recipe schema (pydantic v2, strict: unknown keys are errors).

Every field either changes what a step produces (*content*, the default) or only how fast it
runs (*speed*, marked with ``speed_field``). Plan ids hash the content fields only; see
``content_view``. Defaults for the methods come from the papers cited in DESIGN.md.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from selfaug_compiler.names import NAME_MAX, NAME_PATTERN
from selfaug_compiler.recipe import schema_shapes as sh
from selfaug_compiler.recipe import schema_train as st
from selfaug_compiler.recipe.schema_backends import BackendSpec
from selfaug_compiler.recipe.schema_diagnose import DiagnoseSpec
from selfaug_compiler.recipe.schema_interpolate import InterpolateSpec
from selfaug_compiler.recipe.schema_loss import LossSpec
from selfaug_compiler.recipe.content_ids import (  # noqa: F401  (re-exported: the one place ids are defined)
    SPEED, added_field, content_view, is_speed_field, speed_field,
)

TargetSource = Literal["gold", "self", "paraphrase", "rewrite", "self_dialogue", "replay"]
DType = Literal["auto", "float32", "bfloat16", "float16"]


ACCEPT_TRUNCATED_HELP = ("accept generations cut off at max_new_tokens (finish reason `length`) as training "
                         "targets; by default they are refused like a wrong answer (kept in the data with "
                         "meta.excluded = truncated)")


# Upper bounds: every number a recipe gives is bounded, so that a typo (``epochs: 1e23``) is an
# error at validate, not a run that never ends or a job that asks for an impossible machine.
SEED_MAX = 2**32 - 1  # numpy's seed range
TOKENS_MAX = 32_768  # new tokens per generation
LENGTH_MAX = 131_072  # tokens per training example
ROWS_MAX = 10_000_000  # rows of a split, items of a benchmark, generated dialogues
BATCH_MAX = 65_536
PROCESSES_MAX = 1_024
LAYER_MAX = 10_000
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True, allow_inf_nan=False)


# ----------------------------------------------------------------------------- model
class ModelSpec(Strict):
    """The base model. ``ref`` is ``packaged:<name>``, a hub id (``org/name``) or a local folder."""

    ref: str = Field("packaged:smollm2-135m-instruct", description="packaged:NAME | hub id | local path")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    dtype: DType = Field("auto", description="auto = bf16 where the hardware runs it fast, else fp32")
    chat_template: str | None = Field(None, description="chat template overriding the tokenizer's: a jinja file (relative to the recipe) or a template shipped with selfaug (chatml)")
    trust_remote_code: bool = False
    prompt_format: Literal["chat", "completion"] = added_field("chat", description="chat: prompts and training rows go through the chat template; completion: a base model without one gets raw text (prompt, newline, response + EOS; models/completion.py)")
    backend: BackendSpec = added_field(BackendSpec(), description="generation backend (recipe/schema_backends.py)")


# ----------------------------------------------------------------------------- task data
class FileSource(Strict):
    kind: Literal["file"] = "file"
    path: str = Field(..., description="jsonl, json, csv or parquet file, relative to the recipe")
    encoding: str = added_field("utf-8", description="text encoding of a jsonl/json/csv file, e.g. latin-1, "
                                "cp1252, utf-16 (any Python codec); parquet ignores it")

    @field_validator("encoding")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value[:40]!r} (e.g. utf-8, latin-1, cp1252, utf-16)") from None
        return value


class PackagedSource(Strict):
    kind: Literal["packaged"] = "packaged"
    name: str = Field(..., description="a packaged benchmark, e.g. gsm8k, mbpp, arc_easy")


class HFSource(Strict):
    kind: Literal["hf"] = "hf"
    path: str = Field(..., description="hub dataset id or a dataset saved with save_to_disk")
    name: str | None = None
    split: str = "train"
    revision: str | None = added_field(None, description="hub revision (default: the newest cached build)")


DataSource = Annotated[Union[FileSource, PackagedSource, HFSource], Field(discriminator="kind")]


class FieldMap(Strict):
    """Which source columns hold the prompt, the gold response and the row key."""

    prompt: str = "question"
    response: str = "answer"
    id: str | None = Field(None, description="key column; default: a hash of the prompt")


class Split(Strict):
    """A fixed, seeded train/held-out split of the source rows."""

    train: int | None = Field(None, ge=1, le=ROWS_MAX, description="rows for training (None: all that remain)")
    heldout: int = Field(0, ge=0, le=ROWS_MAX, description="rows held out for in-domain evaluation")
    seed: Seed = 0


class TaskSpec(Strict):
    name: str = Field(..., pattern=NAME_PATTERN, max_length=NAME_MAX)
    source: DataSource
    fields: FieldMap = FieldMap()
    answer_type: Literal["number", "code", "text", "choice"] = "text"
    split: Split = Split()
    system_prompt: str | None = None
    format: sh.TaskFormat = added_field("auto", description=sh.TASK_FORMAT_HELP)


# ----------------------------------------------------------------------------- augmentation
StopString = Annotated[str, Field(min_length=1, max_length=64)]


class Sampling(Strict):
    temperature: float = Field(0.7, ge=0.0, le=5.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1, le=TOKENS_MAX)
    stop: list[StopString] | None = added_field(
        None, max_length=4, description="stop strings (at most 4, as OpenAI's API takes): the reply ends before the first "
        "one (finish reason `stop`, not cut off); for completion-style base models, e.g. ['\\n\\n', 'Question:']")


class Greedy(Sampling):
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)


class JudgeSpec(Strict):
    kind: Literal["numeric", "code_exec", "choice", "embedding", "model"] = "numeric"
    threshold: float = Field(0.8, ge=-1.0, le=1.0, description="embedding similarity needed (embedding judge)")
    template: str = Field("prompts/judge.j2", description="prompt for the model-as-judge")
    model: ModelSpec | None = added_field(None, description="kind model: the judge's own model and backend (default: model)")
    timeout_s: float = speed_field(5.0, gt=0, le=600, description="per-sample limit for code execution")


class NoAugment(Strict):
    method: Literal["none"] = "none"


class SaSftParams(Strict):
    """SA-SFT: self-dialogues of the frozen base model mixed into the task data.

    ``ratio`` is self-dialogue rows per task row in the training set (0.5: one dialogue for
    every two task rows); ``n_dialogues`` caps how many are generated (None: as the ratio needs).
    """

    method: Literal["sa_sft"] = "sa_sft"
    seed: Seed = Field(0, description="sampling seed of the generated data, apart from the recipe seed: runs that "
                      "differ only in the recipe (training) seed share their generated data")
    n_dialogues: int | None = Field(None, ge=1, le=ROWS_MAX)
    ratio: float = Field(0.5, gt=0.0, le=10.0)
    turns: int = Field(1, ge=1, le=8)
    sampling: Sampling = Sampling()
    template: str = "prompts/self_dialogue.j2"
    topics: str | list[str] | None = Field(None, description="seed topics: a list, a file, or None for the built-in list")
    max_repetition: float = Field(0.3, ge=0.0, le=1.0, description="repeated n-gram share above which a dialogue is degenerate")
    accept_truncated: bool = added_field(False, description=ACCEPT_TRUNCATED_HELP)


class S3ftParams(Strict):
    """S3FT: keep the model's own correct answer, else its paraphrase of gold, else gold."""

    method: Literal["s3ft"] = "s3ft"
    seed: Seed = Field(0, description="sampling seed of the generated data, apart from the recipe seed: runs that "
                      "differ only in the recipe (training) seed share their generated data")
    judge: JudgeSpec = JudgeSpec()
    answer: Greedy = Greedy()
    paraphrase: Greedy = Greedy()
    answer_template: str = "prompts/self_answer.j2"
    paraphrase_template: str = "prompts/paraphrase.j2"
    accept_truncated: bool = added_field(False, description=ACCEPT_TRUNCATED_HELP)


class SdftParams(Strict):
    """SDFT: the seed model rewrites each gold answer; leaks and changed answers keep gold."""

    method: Literal["sdft"] = "sdft"
    seed: Seed = Field(0, description="sampling seed of the generated data, apart from the recipe seed: runs that "
                      "differ only in the recipe (training) seed share their generated data")
    sampling: Greedy = Greedy()
    template: str = "prompts/rewrite.j2"
    leak_phrases: list[str] = [
        "reference answer",
        "your response",
        "the reference",
        "original answer",
        "provided answer",
    ]
    check_final_number: bool = True
    accept_truncated: bool = added_field(False, description=ACCEPT_TRUNCATED_HELP)


class ReplayParams(Strict):
    """External-data replay: rows of another dataset mixed in at ``ratio`` per task row."""

    method: Literal["replay"] = "replay"
    source: DataSource = PackagedSource(name="sciq")
    fields: FieldMap = FieldMap(prompt="question", response="answer")
    ratio: float = Field(0.5, gt=0.0, le=10.0)


AugmentSpec = Annotated[
    Union[NoAugment, SaSftParams, S3ftParams, SdftParams, ReplayParams], Field(discriminator="method")
]


# ----------------------------------------------------------------------------- training
class LoraSpec(Strict):
    r: int = Field(8, ge=1, le=4_096)
    alpha: int = Field(16, ge=1, le=65_536)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "v_proj"]
    load_in_4bit: bool = added_field(False, description=st.LOAD_IN_4BIT_HELP)


class FreezeSpec(Strict):
    layers: str | list[int] = Field("0-15", description='indices or ranges: "0-15", "0,2,4-6", or a list')
    embeddings: bool = True

    @field_validator("layers")
    @classmethod
    def _bounded_layers(cls, value: str | list[int]) -> str | list[int]:
        numbers = value if isinstance(value, list) else [int(n) if len(n) < 7 else LAYER_MAX + 1 for n in re.findall(r"\d+", value)]
        if isinstance(value, str) and not re.fullmatch(r"\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*", value[:1000]):
            raise ValueError(f'layers must be indices and ranges such as "0-15" or "0,2,4-6", not {value[:40]!r}')
        if any(not 0 <= n <= LAYER_MAX for n in numbers):
            raise ValueError(f"layer numbers run from 0 to {LAYER_MAX:,}")
        return value


class TrainSpec(Strict):
    method: Literal["full", "lora", "freeze"] = "full"
    lr: float = Field(1e-4, gt=0.0, le=1.0)
    epochs: float = Field(2.0, gt=0.0, le=1_000)
    batch_size: int = Field(8, ge=1, le=BATCH_MAX, description="global batch (micro batch x processes x accumulation)")
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0, le=10.0)
    max_grad_norm: float = Field(1.0, gt=0.0, le=1e6)
    max_length: int = Field(512, ge=16, le=LENGTH_MAX, description="tokens per example (prompt + response)")
    packing: bool = False
    lora: LoraSpec = LoraSpec()
    freeze: FreezeSpec = FreezeSpec()
    save_every_steps: int = speed_field(50, ge=1, le=ROWS_MAX, description="checkpoint interval (resume granularity)")
    strategy: st.Strategy = speed_field("ddp", description=st.STRATEGY_HELP)
    gradient_checkpointing: bool = speed_field(False, description=st.GRADIENT_CHECKPOINTING_HELP)
    weight_dtype: st.WeightDtype = added_field("fp32", description=st.WEIGHT_DTYPE_HELP)
    optimizer: st.Optimizer = added_field("adamw", description=st.OPTIMIZER_HELP)
    loss: LossSpec = added_field(LossSpec(), description="per-token training loss (recipe/schema_loss.py)")
    assistant_turns: sh.AssistantTurns = added_field("all", description=sh.ASSISTANT_TURNS_HELP)


# ----------------------------------------------------------------------------- evaluation
class CustomBenchmark(Strict):
    name: str = Field(..., pattern=NAME_PATTERN, max_length=NAME_MAX)
    path: str = Field(..., description="jsonl: query/choices/gold (multiple_choice) or prompt/answer (generation)")
    type: Literal["multiple_choice", "generation"] = "multiple_choice"
    answer_type: Literal["number", "code", "text"] = "number"


class LmEvalTaskSettings(Strict):
    """Settings of one ``lm_eval:`` benchmark, keyed by its name as written in eval.retention/in_domain."""

    num_fewshot: int | None = Field(None, ge=0, le=100, description="few-shot examples (None: the task's default)")
    fewshot_seed: int = Field(1234, description="seed of lm_eval's few-shot sampler (lm_eval's default)")
    limit: int | None = Field(None, ge=1, description="items, a fixed subset chosen by eval.seed (None: eval.limit)")
    apply_chat_template: bool = Field(False, description="format the requests with the model's chat template")
    fewshot_as_multiturn: bool | None = Field(None, description="few-shot examples as chat turns "
                                              "(None: on with apply_chat_template, as lm_eval's CLI)")
    system_instruction: str | None = None
    gen_kwargs: dict[str, Any] | None = Field(None, description="generation kwargs over the task's own "
                                              "(max_gen_toks, until, temperature, do_sample)")
    metric: str | None = Field(None, description="an item's pass/fail metric (None: acc for multiple_choice and "
                               "loglikelihood tasks, exact_match for generate_until)")
    filter: str | None = Field(None, description="the filter whose results count (None: the task's first)")


class PackagedEvalSettings(Strict):
    """Few-shot and chat settings of one packaged benchmark (evaluate/prompting.py), keyed by its name."""

    num_fewshot: int = Field(0, ge=0, le=32, description="solved examples before each item, drawn from the "
                             "benchmark's items outside the evaluated subset")
    fewshot_seed: int = Field(1234, description="seed of the per-item example draw (lm_eval's default)")
    chat_template: bool | None = Field(None, description="prompts through the model's chat template (None: the "
                                       "benchmark's default: on for generation, off for multiple choice)")


class LmEvalSpec(Strict):
    include_path: list[str] = Field([], description="folders of task YAMLs, relative to the recipe")
    tasks: dict[str, LmEvalTaskSettings] = Field({}, description="settings per lm_eval: benchmark")


class EvalSpec(Strict):
    retention: list[str] = ["arc_easy", "piqa", "hellaswag", "sciq"]
    in_domain: list[str] = Field(["heldout"], description='"heldout" = the task\'s held-out split')
    custom: list[CustomBenchmark] = []
    limit: int | None = Field(200, ge=1, le=ROWS_MAX, description="items per benchmark, a fixed subset chosen by seed")
    max_new_tokens: int = Field(256, ge=1, le=TOKENS_MAX)
    stop: list[StopString] | None = added_field(
        None, max_length=4, description="stop strings for every generated benchmark reply (held-out task, QA, style "
        "retention; not lm_eval tasks, which keep their own `until`): the reply ends before the first one. For "
        "completion-style base models, which run on past their answer, e.g. ['\\n\\n', 'Question:']")
    seed: Seed = 0
    noise_floor: bool = Field(False, description="score the base model a second time (reversed order, noise_batch_size): "
                              "the share of items that flip between the two is the noise floor a drop must exceed")
    noise_batch_size: int = added_field(7, ge=1, le=BATCH_MAX, description="batch size of the noise-floor replica")
    lm_eval: LmEvalSpec = added_field(LmEvalSpec(), description="lm-evaluation-harness benchmarks (lm_eval:TASK or "
                                      "lm_eval:file.yaml in the lists above): include paths and per-task settings")
    packaged: dict[str, PackagedEvalSettings] = added_field({}, description="few-shot and chat-template settings "
                                                            "per packaged benchmark, e.g. gsm8k: {num_fewshot: 5}")
    backend: BackendSpec = added_field(BackendSpec(), description="what generates benchmark replies: transformers or vllm load the evaluated checkpoint in-process (evaluate/eval_backend.py)")


# ----------------------------------------------------------------------------- store, execution
class StoreSpec(Strict):
    path: str | None = Field(None, description="DuckDB file; default .selfaug/store.duckdb (SELFAUG_STORE overrides)")


class SlurmSpec(Strict):
    partition: str | None = speed_field(None)
    time: str = speed_field("04:00:00")
    gpus_per_node: int = speed_field(1, ge=0, le=64)
    cpus_per_task: int = speed_field(8, ge=1, le=PROCESSES_MAX)


class ExecutionSpec(Strict):
    """How to run, never what comes out: every field here is a speed field."""

    launcher: Literal["local", "accelerate", "slurm"] = speed_field("local")
    device: Literal["auto", "cpu", "cuda"] = speed_field("auto")
    num_processes: int = speed_field(1, ge=1, le=PROCESSES_MAX, description="processes per machine")
    num_nodes: int = speed_field(1, ge=1, le=PROCESSES_MAX, description=st.NUM_NODES_HELP)
    _nodes = model_validator(mode="before")(lambda cls, data: st.move_slurm_nodes(data))
    micro_batch_size: int = speed_field(8, ge=1, le=BATCH_MAX)
    generate_batch_size: int = speed_field(16, ge=1, le=BATCH_MAX)
    eval_batch_size: int = speed_field(16, ge=1, le=BATCH_MAX)
    torch_threads: int | None = speed_field(
        None, ge=1, le=PROCESSES_MAX,
        description="torch threads per process; default: the CPUs of the process's affinity / num_processes "
                    "(or OMP_NUM_THREADS); $SELFAUG_TORCH_THREADS overrides")
    slurm: SlurmSpec = speed_field(SlurmSpec())


# ----------------------------------------------------------------------------- continual
class StageSpec(Strict):
    """One stage of a continual sequence: trains from the previous stage's model."""

    task: TaskSpec
    augment: AugmentSpec | None = Field(None, description="None: the recipe's augment")
    train: TrainSpec | None = Field(None, description="None: the recipe's train")


class Recipe(Strict):
    name: str = Field(..., pattern=NAME_PATTERN, max_length=NAME_MAX)
    seed: Seed = 1234
    model: ModelSpec = ModelSpec()
    task: TaskSpec | None = None
    stages: list[StageSpec] | None = Field(None, description="a continual sequence of tasks")
    augment: AugmentSpec = NoAugment()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    store: StoreSpec = StoreSpec()
    execution: ExecutionSpec = ExecutionSpec()
    interpolate: InterpolateSpec | None = added_field(None, description="weight interpolation base<->fine-tuned (recipe/schema_interpolate.py)")
    diagnose: DiagnoseSpec | None = added_field(None, description="run diagnostics: KL to base (recipe/schema_diagnose.py)")

    @model_validator(mode="after")
    def _task_or_stages(self) -> "Recipe":
        if (self.task is None) == (self.stages is None):
            raise ValueError("give exactly one of `task` (a single task) or `stages` (a continual sequence)")
        if self.stages is not None and len(self.stages) < 1:
            raise ValueError("`stages` needs at least one stage")
        return self

    def stage_list(self) -> list[StageSpec]:
        """The tasks in training order, each with its effective augment and train settings."""
        if self.stages is None:
            assert self.task is not None
            return [StageSpec(task=self.task, augment=self.augment, train=self.train)]
        return [
            StageSpec(task=s.task, augment=s.augment or self.augment, train=s.train or self.train)
            for s in self.stages
        ]

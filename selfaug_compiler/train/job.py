"""What one training run needs (``TrainJob``, JSON-able for worker processes) and what it returns.

Layout of a job's output folder::

    out_dir/
      job.json, rows.jsonl      only when worker processes are spawned
      checkpoints/step-000050/  the last checkpoint (tmp dir + rename; removed once the model is saved)
      train_log.jsonl           one line per optimizer step: step, loss, lr, grad_norm, tokens, tokens/s
      model/                    the artifact: full model or LoRA adapter, tokenizer, selfaug_artifact.json
      outcome.json              metrics of the finished run (written by the main process)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selfaug_compiler.files import write_atomic

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"
LOG_FILE = "train_log.jsonl"
OUTCOME_FILE = "outcome.json"
ERROR_FILE = "error.json"


@dataclass
class TrainJob:
    base: str  # model reference or folder (a previous train artifact for continual stages)
    spec: dict[str, Any]  # TrainSpec as a dict
    out_dir: str
    seed: int = 0
    base_revision: str | None = None
    micro_batch_size: int = 8
    num_processes: int = 1
    torch_threads: int | None = None  # per process; None: threads.torch_threads decides
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    chat_template: str | None = None
    prompt_format: str = "chat"  # model.prompt_format (models/completion.py)
    dataset_ref: str | None = None
    rows_file: str | None = None  # rows.jsonl, for worker processes
    max_steps: int | None = None  # stop (checkpointed) after this many steps: interruption hook
    show_progress: bool = True

    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainJob":
        return cls(**json.loads(text))


@dataclass
class TrainOutcome:
    """Result of ``train_model``. ``completed`` is False when stopped early by ``max_steps``."""

    model_dir: Path | None
    fingerprint: str | None
    completed: bool
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["model_dir"] = str(self.model_dir) if self.model_dir else None
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainOutcome":
        data = json.loads(text)
        data["model_dir"] = Path(data["model_dir"]) if data["model_dir"] else None
        return cls(**data)


def write_rows_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def read_rows_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]

"""``train_model``: run a training job in this process, or in N processes through accelerate.

One process runs in-process (no subprocess, no pickling). More than one writes ``job.json`` and
``rows.jsonl`` into the output folder and runs::

    python -m accelerate.commands.launch --multi_gpu --num_processes N --num_machines 1 \
        --mixed_precision no --dynamo_backend no --main_process_port 0 \
        -m selfaug_compiler.train.worker OUT/job.json

``--multi_gpu`` selects accelerate's torchrun launcher, which is also what starts several CPU
processes: ``accelerate launch --cpu --num_processes N`` starts only one process unless MPI is
installed. On a machine without CUDA each worker builds ``Accelerator(cpu=True)``, which joins
a gloo process group (``DistributedType.MULTI_CPU``); with CUDA, NCCL. Precision is handled by
the loop (autocast), not by accelerate's ``--mixed_precision``. The main worker writes the
artifact and ``outcome.json``; a worker's user error or step failure is written to
``error.json`` and raised again here with the same type and message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from selfaug_compiler.errors import SelfaugError, StepFailed
from selfaug_compiler.threads import worker_env
from selfaug_compiler.train.job import ERROR_FILE, OUTCOME_FILE, TrainJob, TrainOutcome, write_rows_jsonl


def train_model(
    base_ref_or_folder: str,
    rows: list[dict[str, Any]],
    spec: Any,
    out_dir: str | Path,
    *,
    seed: int = 0,
    micro_batch_size: int = 8,
    num_processes: int = 1,
    torch_threads: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    base_revision: str | None = None,
    trust_remote_code: bool = False,
    chat_template: str | None = None,
    dataset_ref: str | None = None,
    max_steps: int | None = None,
    show_progress: bool = True,
    after_step: Callable[[int, Any], None] | None = None,
    progress: Callable[..., None] | None = None,
) -> TrainOutcome:
    """Train ``base_ref_or_folder`` on ``rows`` with ``spec`` (a TrainSpec); artifact in ``out_dir/model``.

    Re-running with the same arguments resumes from the last checkpoint. ``max_steps`` stops
    (with a checkpoint) after that many optimizer steps; ``after_step(step, model)`` is called
    after each step in-process (tests use both to interrupt and to inject faults).
    """
    spec_dict = spec.model_dump(mode="json") if hasattr(spec, "model_dump") else dict(spec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job = TrainJob(base=base_ref_or_folder, spec=spec_dict, out_dir=str(out), seed=seed, base_revision=base_revision,
                   micro_batch_size=micro_batch_size, num_processes=num_processes, torch_threads=torch_threads,
                   device=device, dtype=dtype,
                   trust_remote_code=trust_remote_code, chat_template=chat_template, dataset_ref=dataset_ref,
                   max_steps=max_steps, show_progress=show_progress)
    if num_processes == 1:
        from selfaug_compiler.threads import apply_torch_threads, ensure_torch_threads
        from selfaug_compiler.train.loop import run_training

        if torch_threads is not None:
            apply_torch_threads(torch_threads)
        else:
            ensure_torch_threads()

        return run_training(job, rows, after_step=after_step, progress=progress)
    if after_step is not None:
        raise ValueError("after_step hooks run in-process only (num_processes == 1)")
    return launch_workers(job, rows)


def launch_command(job_file: Path, num_processes: int) -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
        "-m", "selfaug_compiler.train.worker", str(job_file),
    ]


def launch_workers(job: TrainJob, rows: list[dict[str, Any]]) -> TrainOutcome:
    out = job.out
    rows_file = out / "rows.jsonl"
    write_rows_jsonl(rows, rows_file)
    job.rows_file = str(rows_file)
    job_file = out / "job.json"
    job_file.write_text(job.to_json(), encoding="utf-8")
    for stale in (out / OUTCOME_FILE, out / ERROR_FILE):
        stale.unlink(missing_ok=True)
    env = worker_env(os.environ, job.torch_threads, job.num_processes)  # each worker's share of the CPUs
    proc = subprocess.Popen(launch_command(job_file, job.num_processes), env=env, start_new_session=True)
    try:
        proc.wait()
    except BaseException:  # Ctrl-C / SIGTERM: stop the whole worker group; checkpoints stay resumable
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    if (out / ERROR_FILE).is_file():
        raise_worker_error(json.loads((out / ERROR_FILE).read_text()))
    if proc.returncode != 0:
        raise StepFailed("train", f"training workers exited with status {proc.returncode}",
                         hint=f"see the output above; the job is in {job_file}")
    if job.max_steps is not None and not (out / OUTCOME_FILE).is_file():
        return TrainOutcome(None, None, False, {"steps_done": job.max_steps})
    return TrainOutcome.from_json((out / OUTCOME_FILE).read_text())


def raise_worker_error(data: dict[str, Any]) -> None:
    """Raise a worker's error again here, with its type and message."""
    from selfaug_compiler.errors import Location, Problem

    if data.get("type") == "SelfaugError":
        problems = []
        for p in data["problems"]:
            location = Location(p["file"], p["line"], p["column"]) if p.get("file") or p.get("line") else None
            problems.append(Problem(p["message"], location=location, field=p.get("field"), expected=p.get("expected"),
                                    found=p.get("found"), hint=p.get("hint"), severity=p.get("severity", "error")))
        raise SelfaugError(problems=problems)
    raise StepFailed("train", data["message"], hint=data.get("hint"))

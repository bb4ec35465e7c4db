"""``train_model``: run a training job in this process, or in worker processes through the
launch files ``compile`` emits (``compile/launch_files.py``).

In-process (no subprocess, no pickling) when the launch settings say so: launcher ``local``, one
process in all, strategy ``ddp``. Otherwise ``job.json`` and ``rows.jsonl`` go into the output
folder with the launch files rendered from the train step's ``speed["launch"]`` (byte for byte
what ``compile`` wrote: ``accelerate_config.yaml``, ``ds_config.json`` under ZeRO,
``train_launch.sh``), and the step runs::

    bash OUT/train_launch.sh OUT/job.json
      -> python -m accelerate.commands.launch --config_file OUT/accelerate_config.yaml \
           --num_machines N --num_processes N*P --machine_rank $SLURM_NODEID ... \
           -m selfaug_compiler.train.worker OUT/job.json

Under ``launcher: slurm`` the script first re-runs itself once per node through ``srun`` (it
refuses to run outside a SLURM job). Several processes under DDP use ``distributed_type:
MULTI_GPU``, accelerate's torchrun launcher, which is also what starts several CPU processes
(``--cpu``/``MULTI_CPU`` start only one unless MPI is installed); on a machine without CUDA each
worker builds ``Accelerator(cpu=True)``, which joins a gloo process group. The main worker writes
the artifact and ``outcome.json``; a worker's user error or step failure is written to
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
    prompt_format: str = "chat",
    dataset_ref: str | None = None,
    max_steps: int | None = None,
    show_progress: bool = True,
    after_step: Callable[[int, Any], None] | None = None,
    progress: Callable[..., None] | None = None,
    launch: dict[str, Any] | None = None,
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
                   prompt_format=prompt_format,
                   max_steps=max_steps, show_progress=show_progress)
    from selfaug_compiler.compile.launch_files import in_process, local_settings

    launch = launch or local_settings(num_processes, device)
    if in_process(launch):
        from selfaug_compiler.threads import apply_torch_threads, ensure_torch_threads
        from selfaug_compiler.train.loop import run_training

        if torch_threads is not None:
            apply_torch_threads(torch_threads)
        else:
            ensure_torch_threads()

        return run_training(job, rows, after_step=after_step, progress=progress)
    if after_step is not None:
        raise ValueError("after_step hooks run in-process only (launcher local, one process, ddp)")
    return launch_workers(job, rows, launch)


def launch_command(job_file: Path, launch: dict[str, Any]) -> list[str]:
    """Write the launch files of ``launch`` beside ``job_file``; the command that runs them."""
    from selfaug_compiler.compile.launch_files import launch_files
    from selfaug_compiler.files import write_atomic

    for name, text in launch_files(launch).items():
        write_atomic(job_file.parent / name, text, executable=name.endswith(".sh"))
    return ["bash", str(job_file.parent / launch["script"]), str(job_file)]


def launch_workers(job: TrainJob, rows: list[dict[str, Any]], launch: dict[str, Any]) -> TrainOutcome:
    out = job.out
    rows_file = out / "rows.jsonl"
    write_rows_jsonl(rows, rows_file)
    job.rows_file = str(rows_file)
    job_file = out / "job.json"
    job_file.write_text(job.to_json(), encoding="utf-8")
    for stale in (out / OUTCOME_FILE, out / ERROR_FILE):
        stale.unlink(missing_ok=True)
    env = worker_env(os.environ, job.torch_threads, launch["num_processes"])  # each worker's share of the CPUs
    env["SELFAUG_PYTHON"] = sys.executable
    proc = subprocess.Popen(launch_command(job_file.resolve(), launch), env=env, start_new_session=True)
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

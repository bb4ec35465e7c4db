"""The training loop: a small accelerate loop, read top to bottom.

Why not ``transformers.Trainer``: everything this step must guarantee is easier to see and to
test in ~200 lines than through Trainer's callbacks and arguments: a data order that depends on
the seed only (so one process and two give the same batches), a loss normalised by the global
batch's target tokens (so micro-batch size and process count do not change the gradient),
checkpoints that are atomic and resume bit-for-bit (RNG included), a NaN check before the
optimizer step (so NaN weights are never written), and a plain jsonl log. accelerate supplies
what is tedious to write: the process group (gloo on CPU, NCCL on GPUs), DDP wrapping,
``no_sync`` during accumulation and the cross-process reductions.

Precision: master weights and optimizer state are fp32; the forward pass runs under bf16
autocast where the hardware runs bf16 natively (``models.loading.resolve_dtype``), fp16 autocast
with a grad scaler on CUDA devices without bf16, else fp32.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from selfaug_compiler.errors import StepFailed
from selfaug_compiler.plan import canonical_json, sha256_hex
from selfaug_compiler.train import checkpoint as ckpt
from selfaug_compiler.train.batches import collate, global_batch, plan_batches, rank_micro_batches
from selfaug_compiler.train.formatting import format_rows, pack_examples
from selfaug_compiler.train.job import CHECKPOINT_DIR, LOG_FILE, MODEL_DIR, OUTCOME_FILE, TrainJob, TrainOutcome, write_atomic
from selfaug_compiler.train.methods import apply_method

AfterStep = Callable[[int, Any], None]


def _optimizer(model: Any, spec: Any) -> Any:
    """AdamW; no weight decay on biases and norm weights (1-d tensors)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": spec.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=spec.lr)


def _scheduler(optimizer: Any, spec: Any, total_steps: int) -> Any:
    from transformers import get_scheduler

    name = "constant_with_warmup" if spec.scheduler == "constant" else spec.scheduler
    warmup = math.ceil(spec.warmup_ratio * total_steps)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def _autocast(device: Any, dtype: Any) -> Callable[[], Any]:
    import torch

    if dtype in (torch.bfloat16, torch.float16):
        return lambda: torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext


def job_signature(job: TrainJob, base_fingerprint: str, rows: list[dict]) -> str:
    """What makes a checkpoint resumable: content params, seed, base weights, data."""
    spec = {k: v for k, v in job.spec.items() if k != "save_every_steps"}
    return sha256_hex(canonical_json({"spec": spec, "seed": job.seed, "base": base_fingerprint,
                                      "rows": sha256_hex(canonical_json(rows))}))[:24]


class Trainer:
    """One run of one job in one process (every rank builds its own)."""

    def __init__(self, job: TrainJob, rows: list[dict], after_step: AfterStep | None = None,
                 progress: Callable[..., None] | None = None) -> None:
        import torch
        from accelerate import Accelerator

        from selfaug_compiler.models.loading import load_model, resolve_device, resolve_dtype
        from selfaug_compiler.recipe.schema import TrainSpec

        self.job, self.after_step, self.progress = job, after_step, progress
        self.spec = TrainSpec.model_validate(job.spec)
        device = resolve_device(job.device)
        self.acc = Accelerator(cpu=device == "cpu")
        self.rank, self.main = self.acc.process_index, self.acc.is_main_process
        self.compute_dtype = resolve_dtype(job.dtype, self.acc.device.type)
        loaded = load_model(job.base, revision=job.base_revision, dtype="float32", device=str(self.acc.device),
                            trust_remote_code=job.trust_remote_code, chat_template=job.chat_template)
        self.tokenizer, self.base_fingerprint = loaded.tokenizer, loaded.fingerprint
        self.examples, self.stats = format_rows(self.tokenizer, rows, self.spec.max_length)
        self.blocks = pack_examples(self.examples, self.spec.max_length) if self.spec.packing else self.examples
        self.plan = plan_batches(len(self.blocks), self.spec, job.micro_batch_size, self.acc.num_processes)
        torch.manual_seed(job.seed)  # LoRA initialisation
        self.model, self.report = apply_method(loaded.model, self.spec)
        self.model.train()
        self.optimizer = _optimizer(self.model, self.spec)
        self.scheduler = _scheduler(self.optimizer, self.spec, self.plan.total_steps)
        self.scaler = torch.amp.GradScaler() if self.compute_dtype == torch.float16 else None
        self.signature = job_signature(job, self.base_fingerprint, rows)
        self.ckpt_root = job.out / CHECKPOINT_DIR
        self.lengths = [len(b) for b in self.blocks]
        self.targets = [b.target_tokens for b in self.blocks]

    # ------------------------------------------------------------------ resume / checkpoints
    def resume(self) -> int:
        if self.main:
            ckpt.latest_checkpoint(self.ckpt_root, self.signature)  # drops stale ones
        self.acc.wait_for_everyone()
        found = (ckpt.checkpoint_dirs(self.ckpt_root) or [None])[-1]
        if found is None:
            return 0
        meta = ckpt.load_checkpoint(found, model=self.model, optimizer=self.optimizer,
                                    scheduler=self.scheduler, rank=self.rank)
        return int(meta["step"])

    def save_checkpoint(self, step: int) -> None:
        tmp = ckpt.tmp_dir_for(self.ckpt_root, step)
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            ckpt.write_main_parts(tmp, model=self.acc.unwrap_model(self.ddp), optimizer=self.optimizer,
                                  scheduler=self.scheduler, step=step, signature=self.signature,
                                  extra={"total_steps": self.plan.total_steps})
        self.acc.wait_for_everyone()
        ckpt.write_rank_rng(tmp, self.rank)
        self.acc.wait_for_everyone()
        if self.main:
            ckpt.publish(self.ckpt_root, tmp, step, self.signature)
        self.acc.wait_for_everyone()

    # ------------------------------------------------------------------ one optimizer step
    def record_shard(self, step: int, micro: list[list[int]]) -> None:
        """With several processes, each rank logs the examples it ran (shards/rank-N.jsonl)."""
        if self.acc.num_processes == 1:
            return
        path = self.job.out / "shards" / f"rank-{self.rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step + 1, "examples": [i for chunk in micro for i in chunk]}) + "\n")

    def train_step(self, step: int) -> tuple[float, float, int]:
        """Forward/backward over this rank's micro-batches, then one optimizer step."""
        import torch

        indices = global_batch(step, len(self.blocks), self.plan.global_batch, self.job.seed)
        n_targets = sum(self.targets[i] for i in indices)
        tokens = sum(self.lengths[i] for i in indices)
        micro = rank_micro_batches(indices, self.lengths, self.plan, self.rank)
        self.record_shard(step, micro)
        step_loss = torch.zeros((), device=self.acc.device)
        for j, chunk in enumerate(micro):
            batch, _ = collate([self.blocks[i] for i in chunk], self.tokenizer.pad_token_id, self.spec.packing)
            batch = {k: v.to(self.acc.device) for k, v in batch.items()}
            sync = j == len(micro) - 1
            with (contextlib.nullcontext() if sync else self.acc.no_sync(self.ddp)):
                with self.autocast():
                    out = self.ddp(**batch, num_items_in_batch=n_targets, use_cache=False)
                # DDP averages gradients over ranks; scale so the result is the global token mean.
                scaled = out.loss * self.acc.num_processes
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            step_loss += out.loss.detach().float()
        step_loss = self.acc.reduce(step_loss, reduction="sum")
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.spec.max_grad_norm)
        loss, norm = float(step_loss), float(grad_norm)
        if not math.isfinite(loss) or (not math.isfinite(norm) and self.scaler is None):
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            raise StepFailed("train", f"the {what} became {loss if what == 'loss' else norm} at step {step + 1}; "
                             "training stopped before the optimizer step (no NaN weights were saved)",
                             hint="lower train.lr, raise warmup, or set model.dtype float32; a re-run resumes "
                                  "from the last checkpoint")
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, norm, tokens

    # ------------------------------------------------------------------ the run
    def run(self) -> TrainOutcome:
        self.ddp = self.acc.prepare_model(self.model)
        self.autocast = _autocast(self.acc.device, self.compute_dtype)
        start = self.resume()
        log = _StepLog(self.job.out / LOG_FILE, start, enabled=self.main)
        bar = _StepProgress(self.progress, self.plan.total_steps, start,
                            enabled=self.main and (self.progress is not None or self.job.show_progress))
        first_loss = log.first_loss()
        started, tokens_seen = time.perf_counter(), 0
        try:
            for step in range(start, self.plan.total_steps):
                if self.job.max_steps is not None and step >= self.job.max_steps:
                    if step > start and step % self.spec.save_every_steps:
                        self.save_checkpoint(step)
                    return TrainOutcome(None, None, False, {"steps_done": step, "steps": self.plan.total_steps})
                t0 = time.perf_counter()
                loss, norm, tokens = self.train_step(step)
                tokens_seen += tokens
                first_loss = loss if first_loss is None else first_loss
                rate = tokens / max(time.perf_counter() - t0, 1e-9)
                log.write({"step": step + 1, "loss": loss, "lr": self.scheduler.get_last_lr()[0],
                           "grad_norm": norm, "tokens": tokens, "tokens_per_s": round(rate, 1)})
                bar(step + 1, loss, rate)
                done = step + 1
                if done % self.spec.save_every_steps == 0 and done < self.plan.total_steps:
                    self.save_checkpoint(done)
                if self.after_step:
                    self.after_step(done, self.acc.unwrap_model(self.ddp))
        finally:
            bar.close()
        wall = time.perf_counter() - started
        metrics = self.metrics(first_loss, log.last_losses(), tokens_seen, wall)
        return self.finish(metrics)

    def metrics(self, first_loss: float | None, last: list[float], tokens: int, wall: float) -> dict[str, Any]:
        tail = last[-max(1, len(last) // 10):] if last else []
        return {
            "train_loss_first": first_loss, "train_loss_last": last[-1] if last else None,
            "train_loss_last_mean": sum(tail) / len(tail) if tail else None,
            "steps": self.plan.total_steps, "tokens": tokens, "wall_s": round(wall, 3),
            "tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
            "examples": self.stats.examples, "dropped_examples": self.stats.dropped,
            "truncated_examples": self.stats.truncated, "packed_blocks": len(self.blocks) if self.spec.packing else None,
            "global_batch": self.plan.global_batch, "accumulation": self.plan.accumulation,
            "num_processes": self.plan.processes, "compute_dtype": str(self.compute_dtype).replace("torch.", ""),
            **self.report.as_dict(),
        }

    def finish(self, metrics: dict[str, Any]) -> TrainOutcome:
        from selfaug_compiler.train.artifact import save_artifact

        model_dir, fingerprint = self.job.out / MODEL_DIR, None
        if self.main:
            fingerprint = save_artifact(self.acc.unwrap_model(self.ddp), self.tokenizer, self.job, model_dir,
                                        base_fingerprint=self.base_fingerprint, metrics=metrics)
        outcome = TrainOutcome(model_dir, fingerprint, True, metrics)
        if self.main:
            write_atomic(self.job.out / OUTCOME_FILE, outcome.to_json())
            shutil.rmtree(self.ckpt_root, ignore_errors=True)  # model + outcome are the new resume point
        self.acc.wait_for_everyone()
        return outcome


class _StepLog:
    """train_log.jsonl: one line per step; on resume, lines after the checkpoint are dropped."""

    def __init__(self, path: Path, start: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        self.entries: list[dict] = []
        if path.is_file():
            self.entries = [e for e in map(json.loads, path.read_text().splitlines()) if e["step"] <= start]
        if enabled:
            write_atomic(path, "".join(json.dumps(e) + "\n" for e in self.entries))

    def write(self, entry: dict) -> None:
        self.entries.append(entry)
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    def first_loss(self) -> float | None:
        return self.entries[0]["loss"] if self.entries else None

    def last_losses(self) -> list[float]:
        return [e["loss"] for e in self.entries]


class _StepProgress:
    """Optimizer steps to the step's progress function, or (a worker process, a direct call) to
    a ``progress.Progress`` of its own; ``enabled`` only on the main process."""

    def __init__(self, progress: Callable[..., None] | None, total: int, start: int, enabled: bool) -> None:
        from selfaug_compiler.progress import Progress

        self.own = Progress("train") if enabled and progress is None else None
        self.report = (progress or self.own) if enabled else None
        self.total = total
        if self.report is not None:
            self.report(start, total, unit="steps")

    def __call__(self, done: int, loss: float, tokens_per_s: float) -> None:
        if self.report is not None:
            self.report(done, self.total, unit="steps", note=f"loss {loss:.4f}, {tokens_per_s:.0f} tok/s")

    def close(self) -> None:
        if self.own is not None:
            self.own.close()


def run_training(job: TrainJob, rows: list[dict], *, after_step: AfterStep | None = None,
                 progress: Callable[..., None] | None = None) -> TrainOutcome:
    """Train ``job`` on ``rows`` in this process (one rank of however many were launched)."""
    return Trainer(job, rows, after_step=after_step, progress=progress).run()

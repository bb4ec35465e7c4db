"""The training loop: an accelerate loop, read top to bottom (the choice against
``transformers.Trainer``/TRL, measured, is in docs/architecture.md, "Training engine").

What this step guarantees and tests: a data order that depends on the seed only (so one process
and two give the same batches), a loss normalised by the global batch's target tokens (so
micro-batch size and process count do not change the gradient), checkpoints that are atomic and
resume bit-for-bit (RNG included), a NaN check before the optimizer step (so NaN weights are
never written), and a plain jsonl log. accelerate does the distributed work: ``prepare`` of model,
optimizer and scheduler (DDP, FSDP2 or DeepSpeed ZeRO from the launcher's accelerate config),
``accelerator.backward``, its ``clip_grad_norm_``, autocast and the fp16 grad scaler, ``no_sync``
during accumulation, ``save_state``/``load_state`` (sharded) checkpoints under FSDP/ZeRO.
Model, optimizer and precision settings: ``train/engine.py``; losses: ``train/losses.py``.

Precision: with ``train.weight_dtype: fp32`` master weights and optimizer state are fp32 and the
forward pass runs under bf16 autocast where the hardware runs bf16 natively
(``models.loading.resolve_dtype``), fp16 autocast with a grad scaler on CUDA devices without
bf16, else fp32; with bf16 weights, weights and gradients are bf16.
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
from selfaug_compiler.train import engine
from selfaug_compiler.train.batches import collate, global_batch, plan_batches, rank_micro_batches
from selfaug_compiler.train.formatting import format_rows, pack_examples
from selfaug_compiler.train.job import CHECKPOINT_DIR, LOG_FILE, MODEL_DIR, OUTCOME_FILE, TrainJob, TrainOutcome, write_atomic
from selfaug_compiler.train.losses import base_logits_fn, token_loss_sum
from selfaug_compiler.train.methods import apply_method

AfterStep = Callable[[int, Any], None]


def _scheduler(optimizer: Any, spec: Any, total_steps: int) -> Any:
    from transformers import get_scheduler

    name = "constant_with_warmup" if spec.scheduler == "constant" else spec.scheduler
    warmup = math.ceil(spec.warmup_ratio * total_steps)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


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

        from selfaug_compiler.models.loading import resolve_device, resolve_dtype
        from selfaug_compiler.recipe.schema import TrainSpec

        self.job, self.after_step, self.progress = job, after_step, progress
        self.within_step: Callable[[str], None] = lambda note: None  # run() points it at the step's progress
        self.spec = TrainSpec.model_validate(job.spec)
        device = resolve_device(job.device)
        device_type = "cpu" if device == "cpu" else device.split(":")[0]
        self.weight_dtype = engine.weight_dtype(self.spec, device_type)
        self.compute_dtype = (self.weight_dtype if self.weight_dtype != torch.float32
                              else resolve_dtype(job.dtype, device_type))
        self.acc = engine.make_accelerator(device == "cpu", self.compute_dtype)
        engine.check_strategy(self.acc, self.spec)  # before loading anything
        self.rank, self.main = self.acc.process_index, self.acc.is_main_process
        loaded = engine.load_for_training(job, self.spec, self.acc.device, self.compute_dtype)
        self.tokenizer, self.base_fingerprint = loaded.tokenizer, loaded.fingerprint
        self.examples, self.stats = format_rows(self.tokenizer, rows, self.spec.max_length,
                                                self.spec.assistant_turns)
        self.blocks = pack_examples(self.examples, self.spec.max_length) if self.spec.packing else self.examples
        self.plan = plan_batches(len(self.blocks), self.spec, job.micro_batch_size, self.acc.num_processes)
        torch.manual_seed(job.seed)  # LoRA initialisation
        self.model, self.report = apply_method(loaded.model, self.spec)
        self.model.train()
        self.optimizer = engine.build_optimizer(self.model, self.spec)
        self.scheduler = _scheduler(self.optimizer, self.spec, self.plan.total_steps)
        self.base_logits = base_logits_fn(self.model, self.spec, lambda: engine.load_for_training(
            job, self.spec.model_copy(update={"gradient_checkpointing": False}), self.acc.device,
            self.compute_dtype).model)
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
        if engine.sharded(self.acc):  # FSDP / ZeRO: accelerate's sharded state, RNG included
            self.acc.load_state(str(found / ckpt.ACCELERATE_STATE))
            return int(json.loads((found / "meta.json").read_text())["step"])
        meta = ckpt.load_checkpoint(found, model=self.model, optimizer=self.optimizer,
                                    scheduler=self.scheduler, rank=self.rank)
        return int(meta["step"])

    def save_checkpoint(self, step: int) -> None:
        tmp = ckpt.tmp_dir_for(self.ckpt_root, step)
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        if engine.sharded(self.acc):  # every rank writes its shard of model and optimizer
            self.acc.wait_for_everyone()
            self.acc.save_state(str(tmp / ckpt.ACCELERATE_STATE))
            if self.main:
                (tmp / "meta.json").write_text(json.dumps({"step": step, "total_steps": self.plan.total_steps}))
        elif self.main:
            ckpt.write_main_parts(tmp, model=self.acc.unwrap_model(self.ddp), optimizer=self.optimizer,
                                  scheduler=self.scheduler, step=step, signature=self.signature,
                                  extra={"total_steps": self.plan.total_steps})
        self.acc.wait_for_everyone()
        if not engine.sharded(self.acc):
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
        # DDP/FSDP/ZeRO average gradients over ranks; scale so the result is the global token mean.
        # DeepSpeed also divides by its gradient_accumulation_steps (ds_config.json: the plan's).
        factor = self.acc.num_processes * (self.plan.accumulation if self.deepspeed else 1)
        for j, chunk in enumerate(micro):
            batch, _ = collate([self.blocks[i] for i in chunk], self.tokenizer.pad_token_id, self.spec.packing)
            batch = {k: v.to(self.acc.device) for k, v in batch.items()}
            sync = j == len(micro) - 1
            self.acc.gradient_state._set_sync_gradients(sync)  # DeepSpeed steps in backward at sync
            with (contextlib.nullcontext() if sync else self.acc.no_sync(self.ddp)):
                self.within_step(f"step {step + 1}: micro-batch {j + 1}/{len(micro)} forward")
                loss = self.micro_loss(batch, n_targets)
                self.within_step(f"step {step + 1}: micro-batch {j + 1}/{len(micro)} backward")
                self.acc.backward(loss * factor)
            step_loss += loss.detach().float()
        step_loss = self.acc.reduce(step_loss, reduction="sum")
        grad_norm = self.acc.clip_grad_norm_(self.ddp.parameters(), self.spec.max_grad_norm)
        if grad_norm is None and self.deepspeed:  # DeepSpeed clips inside its step (ds_config gradient_clipping)
            grad_norm = self.ddp.get_global_grad_norm()
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        loss, norm = float(step_loss), float(grad_norm if grad_norm is not None else float("nan"))
        if not math.isfinite(loss) or (not math.isfinite(norm) and self.acc.scaler is None):
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            raise StepFailed("train", f"the {what} became {loss if what == 'loss' else norm} at step {step + 1}; "
                             "training stopped before the optimizer step (no NaN weights were saved)",
                             hint="lower train.lr, raise warmup, or set model.dtype float32; a re-run resumes "
                                  "from the last checkpoint")
        self.optimizer.step()  # prepared: the fp16 scaler's step where there is one; no-op under DeepSpeed
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, norm, tokens

    def micro_loss(self, batch: dict[str, Any], n_targets: int) -> Any:
        """This micro-batch's loss summed over its target tokens / the global batch's target tokens."""
        if self.spec.loss.kind == "ce":  # the model's own loss, as before train.loss existed
            return self.ddp(**batch, num_items_in_batch=n_targets, use_cache=False).loss
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = self.ddp(**inputs, use_cache=False).logits
        base = None
        if self.base_logits is not None:
            with self.acc.autocast():
                base = self.base_logits(inputs)
        return token_loss_sum(logits, labels, self.spec.loss.kind, self.spec.loss.beta, base) / n_targets

    # ------------------------------------------------------------------ the run
    def run(self) -> TrainOutcome:
        from accelerate.utils import DistributedType

        self.deepspeed = self.acc.distributed_type == DistributedType.DEEPSPEED
        self.ddp, self.optimizer, self.scheduler = self.acc.prepare(self.model, self.optimizer, self.scheduler)
        if engine.sharded(self.acc):  # the prepared (sharded) module is the one that trains
            self.model = self.acc.unwrap_model(self.ddp)
        start = self.resume()
        log = _StepLog(self.job.out / LOG_FILE, start, enabled=self.main)
        bar = _StepProgress(self.progress, self.plan.total_steps, start,
                            enabled=self.main and (self.progress is not None or self.job.show_progress))
        self.within_step = bar.within  # a step of minutes (fp32 CPU) reports its micro-batches
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
            "weight_dtype": str(self.weight_dtype).replace("torch.", ""), "strategy": self.spec.strategy,
            "loss": self.spec.loss.kind,
            **self.report.as_dict(),
        }

    def finish(self, metrics: dict[str, Any]) -> TrainOutcome:
        from selfaug_compiler.train.artifact import save_artifact

        model_dir, fingerprint = self.job.out / MODEL_DIR, None
        state = engine.full_state_dict(self.acc, self.ddp)  # gathered from the shards (FSDP/ZeRO)
        if self.main:
            fingerprint = save_artifact(self.acc.unwrap_model(self.ddp), self.tokenizer, self.job, model_dir,
                                        base_fingerprint=self.base_fingerprint, metrics=metrics, state_dict=state)
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
        self.total, self.done = total, start
        if self.report is not None:
            self.report(start, total, unit="steps")

    def __call__(self, done: int, loss: float, tokens_per_s: float) -> None:
        self.done = done
        if self.report is not None:
            self.report(done, self.total, unit="steps", note=f"loss {loss:.4f}, {tokens_per_s:.0f} tok/s")

    def within(self, note: str) -> None:
        """Where the current optimizer step is (the count unchanged): a plain line at most every
        progress interval, so no silence lasts a whole step."""
        if self.report is not None:
            self.report(self.done, self.total, unit="steps", note=note)

    def close(self) -> None:
        if self.own is not None:
            self.own.close()


def run_training(job: TrainJob, rows: list[dict], *, after_step: AfterStep | None = None,
                 progress: Callable[..., None] | None = None) -> TrainOutcome:
    """Train ``job`` on ``rows`` in this process (one rank of however many were launched)."""
    return Trainer(job, rows, after_step=after_step, progress=progress).run()

"""Checkpoints: trainable weights, optimizer, scheduler, RNG states and the step, written atomically.

A checkpoint is written into ``checkpoints/.step-N.tmp`` and renamed to ``checkpoints/step-N``
once complete; the previous one is removed afterwards, so at any moment at least one complete
checkpoint exists (or none yet). Only trainable parameters are saved (frozen ones equal the
base model's), which keeps LoRA and freeze checkpoints small. ``state.json`` holds a signature
of the job's content (spec, seed, base model, data): a checkpoint of a different job is never
resumed from.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

STATE = "state.json"
ACCELERATE_STATE = "accelerate"  # FSDP / ZeRO: accelerate's save_state folder (sharded), inside step-N


def checkpoint_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def latest_checkpoint(root: Path, signature: str) -> Path | None:
    """The newest complete checkpoint of this job, or None. Stale ones (other signature) are removed."""
    dirs = checkpoint_dirs(root)
    for d in dirs:
        state = json.loads((d / STATE).read_text())
        if state.get("signature") != signature:
            print(f"selfaug: removing checkpoint {d} of a different training job", flush=True)
            shutil.rmtree(d, ignore_errors=True)
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: Any) -> dict[str, Any]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def tmp_dir_for(root: Path, step: int) -> Path:
    return root / f".step-{step:06d}.tmp"


def write_main_parts(tmp: Path, *, model: Any, optimizer: Any, scheduler: Any, step: int,
                     signature: str, extra: dict[str, Any]) -> None:
    """The rank-independent parts (written by the main process)."""
    import torch
    from safetensors.torch import save_file

    save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, **extra}, default=str))


def write_rank_rng(tmp: Path, rank: int) -> None:
    import torch

    torch.save(rng_state(), tmp / f"rng-{rank}.pt")


def publish(root: Path, tmp: Path, step: int, signature: str) -> Path:
    """Mark ``tmp`` complete (state.json last), rename it into place, drop older checkpoints."""
    (tmp / STATE).write_text(json.dumps({"step": step, "signature": signature}))
    final = root / f"step-{step:06d}"
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for older in checkpoint_dirs(root):
        if older != final:
            shutil.rmtree(older, ignore_errors=True)
    return final


def load_checkpoint(path: Path, *, model: Any, optimizer: Any, scheduler: Any, rank: int) -> dict[str, Any]:
    """Restore everything into the live objects; returns the checkpoint's meta (with ``step``)."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [name for name in weights if name not in params]
    if missing:
        raise RuntimeError(f"checkpoint {path} has parameters this model lacks: {missing[:3]}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng_file = path / f"rng-{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return json.loads((path / "meta.json").read_text())

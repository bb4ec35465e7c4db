"""The trained artifact: a model folder (full/freeze) or an adapter folder (lora), plus metadata.

Written into ``.model.tmp`` next to the target and renamed into place, so a crash never leaves a
half-saved model. ``selfaug_artifact.json`` (every method) names the base model, the method, the
dataset version, the training parameters and the artifact's fingerprint; ``load_model`` uses
``base_model`` to load a LoRA adapter onto its base.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from selfaug_compiler.models.fingerprint import folder_fingerprint
from selfaug_compiler.models.loading import ARTIFACT_META


def save_artifact(model: Any, tokenizer: Any, job: Any, target: Path, *, base_fingerprint: str,
                  metrics: dict[str, Any], state_dict: dict[str, Any] | None = None) -> str:
    """Save ``model`` (a PeftModel for lora) and the tokenizer to ``target``; returns its fingerprint."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # PeftModel: the adapter only; ``state_dict``: the full one gathered from FSDP/ZeRO shards
    model.save_pretrained(tmp, **({"state_dict": state_dict} if state_dict is not None else {}))
    tokenizer.save_pretrained(tmp)
    fingerprint = folder_fingerprint(tmp)
    meta = {
        "base_model": _absolute_ref(job.base),
        "base_revision": job.base_revision,
        "base_fingerprint": base_fingerprint,
        "method": job.spec.get("method", "full"),
        "dataset": job.dataset_ref,
        "train_params": job.spec,
        "seed": job.seed,
        "fingerprint": fingerprint,
        "metrics": {k: v for k, v in metrics.items() if k != "frozen_layers"},
    }
    (tmp / ARTIFACT_META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return fingerprint


def _absolute_ref(ref: str) -> str:
    """Local folders are recorded absolute, so the adapter loads from anywhere."""
    path = Path(ref).expanduser()
    if not ref.startswith("packaged:") and path.is_dir():
        return str(path.resolve())
    return ref

"""The ``transformers`` backend: selfaug's own engine (``generate/engine.py``) on a loaded model.

Rows are batch-independent: each row samples with its own generator (see the engine's docstring).
"""

from __future__ import annotations

from typing import Any, Callable

from selfaug_compiler.generate.backends.base import register
from selfaug_compiler.generate.engine import Generation, OnBatch, Prompt, SamplingParams


@register("transformers")
class TransformersBackend:
    kind = "transformers"

    def __init__(self, loaded: Any, model_ref: str | None = None) -> None:
        self.loaded = loaded
        self.model_ref = model_ref

    def generate(self, prompts: list[Prompt], params: SamplingParams, *, seeds: list[int],
                 batch_size: int = 16, chat: bool | None = None, on_batch: OnBatch | None = None,
                 progress: bool | Callable[..., None] = False) -> list[Generation]:
        from selfaug_compiler.generate.engine import generate

        return generate(self.loaded, prompts, params, seeds=seeds, batch_size=batch_size, chat=chat,
                        on_batch=on_batch, progress=progress)

    def provenance(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.kind, "batch_invariant": True}
        if self.model_ref:
            out["model"] = self.model_ref
        return out

"""The generation backend protocol and its one registry.

A backend turns prompts (a chat prompt: a list of ``{"role", "content"}`` messages, or a raw
completion string) with ``engine.SamplingParams`` and one seed per prompt into one
``BackendGeneration`` per prompt, in input order: text, prompt/new token counts and a
``finish_reason`` of ``stop`` or ``length`` (a reply cut off at ``max_new_tokens`` must stay
``length``: the truncated-target rule, ``augment/common.is_truncated``). ``on_batch(indices,
generations)`` is called after every ``batch_size`` finished prompts so callers stage per batch.

``provenance()`` describes the backend for each generated row (backend kind, model, whether a
row's text is independent of the other prompts it was batched with: ``batch_invariant``).
Per-row facts a server reports (its ``model`` field, ``system_fingerprint``) are in
``BackendGeneration.meta``.

Backends register under a kind name (``transformers``, ``openai``, ``vllm``); ``make_backend``
builds one from a kind and its options. Importing this module never imports torch, vllm or openai.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from selfaug_compiler.generate.engine import Generation, OnBatch, Prompt, SamplingParams


class BackendError(RuntimeError):
    """A backend could not produce generations (server down, retries spent, malformed reply).

    One message saying what failed and how to fix it; generate steps turn it into ``StepFailed``
    (exit 1) after keeping what they staged, so the same command resumes.
    """


@dataclass
class BackendGeneration(Generation):
    meta: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    kind: str

    def generate(self, prompts: list[Prompt], params: SamplingParams, *, seeds: list[int],
                 batch_size: int = 16, chat: bool | None = None, on_batch: OnBatch | None = None,
                 progress: bool | Callable[..., None] = False) -> list[Generation]: ...

    def provenance(self) -> dict[str, Any]: ...


_REGISTRY: dict[str, Callable[..., Backend]] = {}


def register(kind: str) -> Callable[[Callable[..., Backend]], Callable[..., Backend]]:
    def wrap(factory: Callable[..., Backend]) -> Callable[..., Backend]:
        _REGISTRY[kind] = factory
        return factory

    return wrap


def backend_kinds() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def make_backend(kind: str, **options: Any) -> Backend:
    """The backend ``kind`` built with ``options`` (see each backend's constructor)."""
    _load_builtin()
    if kind not in _REGISTRY:
        raise BackendError(f"unknown generation backend {kind!r}; expected one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind](**options)


def _load_builtin() -> None:
    from selfaug_compiler.generate.backends import openai_backend, transformers_backend, vllm_backend  # noqa: F401


def batches_in_order(n: int, size: int) -> list[list[int]]:
    """Input indices cut into consecutive batches of ``size``."""
    size = max(1, size)
    return [list(range(i, min(n, i + size))) for i in range(0, n, size)]

"""``model.backend``: which generation backend serves a model (``generate/backends/``).

Content (in step ids): ``kind``, ``served_model`` and ``mode`` (what answers and how it is asked).
Speed (never in step ids): where the server is and how it is driven (``base_url``, ``api_key_env``,
concurrency, retries, timeouts), vLLM's parallelism/memory settings and ``data_parallel_size``
(``generate/data_parallel.py``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from selfaug_compiler.recipe.content_ids import speed_field as _speed


class BackendSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True, allow_inf_nan=False)

    kind: Literal["transformers", "openai", "vllm"] = Field(
        "transformers", description="transformers = selfaug's engine in-process; openai = an OpenAI-compatible "
                                    "server; vllm = vLLM offline (CUDA, extra selfaug-compiler[vllm])")
    served_model: str | None = Field(None, description="openai: the model name the server knows (default: model.ref)")
    mode: Literal["chat", "completions"] = Field("chat", description="openai: /chat/completions or /completions")
    base_url: str | None = _speed(None, description="openai: server URL ending in /v1 (default: $OPENAI_BASE_URL)")
    api_key_env: str = _speed("OPENAI_API_KEY", description="openai: the variable holding the key (never the key)")
    max_concurrency: int = _speed(8, ge=1, le=1024, description="openai: requests in flight")
    max_retries: int = _speed(4, ge=0, le=100, description="openai: retries on 429/5xx/timeouts/refused connections")
    backoff_s: float = _speed(1.0, ge=0, le=600, description="openai: first retry wait, doubled each retry")
    request_timeout_s: float = _speed(120.0, gt=0, le=3600, description="openai: per-request timeout")
    tensor_parallel_size: int = _speed(1, ge=1, le=64, description="vllm: GPUs per model replica")
    gpu_memory_utilization: float = _speed(0.9, gt=0, le=1, description="vllm: share of GPU memory it may take")
    max_model_len: int | None = _speed(None, ge=1, le=1_048_576, description="vllm: context length limit")
    data_parallel_size: int = _speed(1, ge=1, le=64, description="transformers/vllm generate steps: k worker "
                                     "processes on this node, worker i generating shard i/k of the rows on its own "
                                     "GPUs (vllm: tensor_parallel_size each) or CPU threads; model.backend only")

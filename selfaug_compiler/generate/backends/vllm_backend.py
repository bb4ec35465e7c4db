"""The ``vllm`` backend: vLLM's offline API (``vllm.LLM``, ``SamplingParams(seed=...)``, ``LLM.chat``/``generate``).

Needs CUDA and the optional extra ``selfaug-compiler[vllm]``; vllm is imported only when the
backend is built. Generate steps pass ``model.dtype`` (resolved as selfaug resolves ``auto`` on CUDA)
and ``model.chat_template``'s text (``backends/steps.py``). vLLM batches prompts itself, so rows are not promised batch-independent.
"""

from __future__ import annotations

from typing import Any, Callable

from selfaug_compiler.generate.backends.base import BackendGeneration, batches_in_order, register
from selfaug_compiler.generate.engine import Generation, OnBatch, Prompt, SamplingParams


@register("vllm")
class VLLMBackend:
    kind = "vllm"
    prompt_format = "chat"  # set from model.prompt_format by backends/steps.py

    def __init__(self, model: str, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, seed: int = 0, dtype: str = "auto",
                 chat_template: str | None = None) -> None:
        """``dtype``: vLLM's ``LLM(dtype=)`` (float32 | float16 | bfloat16 | auto); ``chat_template``: the
        template's text, passed as ``LLM.chat(chat_template=)`` (None: the tokenizer's own)."""
        from vllm import LLM

        self.model, self.chat_template, self.dtype = model, chat_template, dtype
        kwargs: dict[str, Any] = {"tensor_parallel_size": tensor_parallel_size, "dtype": dtype,
                                  "gpu_memory_utilization": gpu_memory_utilization, "seed": seed}
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.llm = LLM(model=model, **kwargs)

    def generate(self, prompts: list[Prompt], params: SamplingParams, *, seeds: list[int],
                 batch_size: int = 16, chat: bool | None = None, on_batch: OnBatch | None = None,
                 progress: bool | Callable[..., None] = False) -> list[Generation]:
        from vllm import SamplingParams as VSP

        results: list[Generation] = []
        for batch in batches_in_order(len(prompts), batch_size):
            sps = [VSP(temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
                       seed=seeds[i], stop=list(params.stop) or None) for i in batch]
            if chat is None and self.prompt_format == "completion":  # models/completion.py
                from selfaug_compiler.models.completion import completion_prompt

                outs = self.llm.generate([completion_prompt(prompts[i]) for i in batch], sampling_params=sps,
                                         use_tqdm=False)
            elif chat is not False:
                convs = [p if isinstance(p, list) else [{"role": "user", "content": p}] for p in (prompts[i] for i in batch)]
                outs = self.llm.chat(convs, sampling_params=sps, use_tqdm=False, chat_template=self.chat_template)
            else:
                outs = self.llm.generate([prompts[i] for i in batch], sampling_params=sps, use_tqdm=False)
            gens = [BackendGeneration(text=o.outputs[0].text.strip(), prompt_tokens=len(o.prompt_token_ids or []),
                                      new_tokens=len(o.outputs[0].token_ids),
                                      finish_reason="length" if o.outputs[0].finish_reason == "length" else "stop")
                    for o in outs]
            results.extend(gens)
            if on_batch is not None:
                on_batch(batch, gens)
        return results

    def provenance(self) -> dict[str, Any]:
        return {"backend": self.kind, "model": self.model, "dtype": self.dtype, "batch_invariant": False}

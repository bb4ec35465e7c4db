"""The vllm backend on vLLM's offline API (CUDA + the vllm extra only; skipped elsewhere): replies in
input order, a reply cut off at max_new_tokens stays ``length``, the same seed gives the same text."""

from __future__ import annotations

import importlib.util

import pytest

from selfaug_compiler.precision import visible_cuda_devices

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(visible_cuda_devices() == 0 or importlib.util.find_spec("vllm") is None,
                                 reason="needs a CUDA device and vllm (pip install 'selfaug-compiler[vllm]')")]


def test_vllm_backend_generates_with_seeds_and_finish_reasons():
    from selfaug_compiler.generate.backends import make_backend
    from selfaug_compiler.generate.engine import SamplingParams
    from selfaug_compiler.models.cache import converted_packaged_model

    backend = make_backend("vllm", model=str(converted_packaged_model("smollm2-135m-instruct")),
                           gpu_memory_utilization=0.3, max_model_len=2048)
    prompts = ["What is 2 + 3?", [{"role": "user", "content": "Name a colour."}]]
    batches = []
    short = backend.generate(prompts, SamplingParams(max_new_tokens=3), seeds=[1, 2], batch_size=1,
                             on_batch=lambda idx, g: batches.append(idx))
    assert batches == [[0], [1]] and [g.finish_reason for g in short] == ["length", "length"]
    assert all(g.new_tokens == 3 and g.prompt_tokens > 0 for g in short)
    hot = SamplingParams(temperature=1.0, max_new_tokens=24)
    one = backend.generate(prompts, hot, seeds=[5, 6])
    two = backend.generate(prompts, hot, seeds=[5, 6])
    assert [g.text for g in one] == [g.text for g in two]
    assert backend.provenance()["batch_invariant"] is False
    # stop strings: a string from the middle of a greedy reply ends it there, as the engine does
    free = backend.generate(prompts[:1], SamplingParams(max_new_tokens=24), seeds=[1])[0]
    stop = free.text[len(free.text) // 2:len(free.text) // 2 + 3]
    cut = backend.generate(prompts[:1], SamplingParams(max_new_tokens=24, stop=(stop,)), seeds=[1])[0]
    assert cut.finish_reason == "stop" and cut.text == free.text[:free.text.index(stop)].strip()

"""The batched generation engine.

Prompts are sorted by token length (longest first) and decoded ``batch_size`` rows at a time with
a KV cache (a transformers ``DynamicCache``) in a small loop written here (``slots.py``, not
``model.generate``) so that sampling uses one ``torch.Generator`` per row: a row's sampled text
depends only on its own seed and prompt, never on which other prompts share its batch.
Continuous batching: a finished row leaves the batch at once (its cache row is dropped) and its
slot is refilled with the next prompt (prefilled, then its cache rows joined to the running
cache, left-padded), so no row waits for the longest answer of a batch.

``on_batch(indices, generations)`` is called after every ``batch_size`` finished rows with their
input indices, so a caller can commit each batch (per-batch staging, resume after a crash).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Literal

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


@dataclass
class SamplingParams:
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()  # stop strings: the reply ends before the first one (finish_reason "stop")

    def __post_init__(self) -> None:
        self.stop = tuple(str(s) for s in (self.stop or ()) if str(s))

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.stop:
            out["stop"] = list(self.stop)
        else:
            out.pop("stop")  # rows without stop strings keep the provenance they had before the field
        return out


SAMPLING_KEYS = tuple(f.name for f in fields(SamplingParams))  # what a step's `sampling` params may set


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found (as vLLM and OpenAI servers
    return it: the stop string itself is not part of the reply)."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[:min(hits)], True) if hits else (text, False)


def stop_string_matcher(tokenizer: Any, stop: tuple[str, ...]) -> Callable[[list[int]], bool] | None:
    """A test of a row's new token ids: does its decoded tail contain a stop string? The tail is as
    many tokens as the longest stop string has characters, plus a few (a token is at least one
    character, except byte pieces of one character)."""
    if not stop:
        return None
    window = max(len(s) for s in stop) + 4

    def hit(ids: list[int]) -> bool:
        tail = tokenizer.decode(ids[-window:], skip_special_tokens=True)
        return any(s in tail for s in stop)

    return hit


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    new_tokens: int
    finish_reason: Literal["stop", "length"]


Prompt = str | list[dict]
OnBatch = Callable[[list[int], list[Generation]], None]


def stop_token_ids(loaded: Any) -> set[int]:
    """EOS ids of the tokenizer and generation config, plus the chat template's end-of-turn."""
    tok = loaded.tokenizer
    ids: set[int] = set()
    if tok.eos_token_id is not None:
        ids.add(int(tok.eos_token_id))
    cfg_eos = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    if cfg_eos is not None:
        ids.update(int(i) for i in (cfg_eos if isinstance(cfg_eos, (list, tuple)) else [cfg_eos]))
    vocab = tok.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab and _in_template(tok, t))
    return ids


def _in_template(tok: Any, token: str) -> bool:
    template = getattr(tok, "chat_template", None)
    return token == tok.eos_token or (isinstance(template, str) and token in template)


def prompt_text(tokenizer: Any, prompt: Prompt, chat: bool | None = None) -> tuple[str, bool]:
    """The text the model gets for one prompt, and whether it is chat-templated.

    ``chat=None`` (every step): the model's declared format (``models/completion.py``): its chat
    template with the generation prompt, or ``completion_prompt`` (the training format) for a
    completion-style model. ``chat=False``: the string exactly as given (lm_eval-style raw
    benchmark prompts). ``chat=True`` on a completion-style model is an error, never raw text."""
    from selfaug_compiler.models.completion import completion_prompt, uses_chat

    declared = uses_chat(tokenizer) if chat is not False else False
    if chat is None and not declared:
        return completion_prompt(prompt), False
    if chat and not declared:
        from selfaug_compiler.errors import SelfaugError

        raise SelfaugError("a chat-formatted prompt was asked of a completion-style model", field="model.prompt_format",
                           hint="drop the benchmark's chat_template setting, or set model.prompt_format: chat")
    if declared:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
    return prompt if isinstance(prompt, str) else completion_prompt(prompt), False


def encode_prompt(tokenizer: Any, prompt: Prompt, chat: bool | None = None) -> list[int]:
    """Token ids of one prompt (``prompt_text``): a chat-templated text carries its own special
    tokens; raw text gets the tokenizer's (a BOS where the model uses one)."""
    text, templated = prompt_text(tokenizer, prompt, chat)
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


def row_generators(seeds: list[int], device: str) -> list[Any]:
    import torch

    gens = []
    for seed in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
        gens.append(g)
    return gens


def pick_tokens(logits: Any, params: SamplingParams, gens: list[Any]) -> Any:
    """One next token per row: argmax when greedy, else nucleus sampling with each row's generator.

    Sampling is inverse-CDF with one uniform number per row drawn from that row's generator,
    so the choice depends on the row's own logits and seed only.
    """
    import torch

    if params.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    cum = sorted_p.cumsum(dim=-1)
    if params.top_p < 1.0:
        keep = (cum - sorted_p) < params.top_p  # always keeps the top token
        sorted_p = sorted_p * keep
        cum = sorted_p.cumsum(dim=-1)
    u = torch.stack([torch.rand((), generator=g, device=g.device) for g in gens]).to(cum.device)
    u = u * cum[:, -1]
    choice = torch.searchsorted(cum, u.unsqueeze(-1)).clamp(max=cum.shape[-1] - 1)
    return order.gather(-1, choice).squeeze(-1)


def _left_pad(batch_ids: list[list[int]], pad_id: int, device: str) -> tuple[Any, Any]:
    import torch

    width = max(len(ids) for ids in batch_ids)
    input_ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
    for i, ids in enumerate(batch_ids):
        input_ids[i, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        mask[i, width - len(ids):] = 1
    return input_ids.to(device), mask.to(device)


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Input indices grouped into batches of similar prompt length (longest first: OOM shows early)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def generate(
    loaded: Any,
    prompts: list[Prompt],
    params: SamplingParams,
    *,
    seeds: list[int] | None = None,
    batch_size: int = 16,
    chat: bool | None = None,
    on_batch: OnBatch | None = None,
    progress: bool | Callable[..., None] = True,
) -> list[Generation]:
    """Generate one completion per prompt; results in input order (see the module docstring).

    ``batch_size`` rows decode together; ``on_batch`` gets every ``batch_size`` finished rows (the
    rest at the end). ``progress``: True shows its own ``progress.Progress`` (label ``generate``), a
    progress function gets ``(done, total, unit="prompts", note="N tok/s")`` per call, False nothing.
    """
    from selfaug_compiler.generate.slots import decode_stream

    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    seeds = seeds if seeds is not None else list(range(len(prompts)))
    encoded = [encode_prompt(loaded.tokenizer, p, chat) for p in prompts]
    stops = stop_token_ids(loaded)
    results: list[Generation | None] = [None] * len(prompts)
    size = max(1, batch_size)
    bar = _Throughput(len(prompts), progress)
    finished: list[int] = []

    def flush() -> None:
        done = list(finished)
        finished.clear()
        if on_batch is not None:
            on_batch(done, [results[i] for i in done])
        bar.advance(len(done), sum(results[i].new_tokens for i in done))

    def on_row(i: int, ids: list[int], reason: str) -> None:
        text, _ = cut_at_stop(loaded.tokenizer.decode(ids, skip_special_tokens=True), params.stop)
        results[i] = Generation(text=text.strip(), prompt_tokens=len(encoded[i]), new_tokens=len(ids),
                                finish_reason=reason)
        finished.append(i)
        if len(finished) >= size:
            flush()

    try:
        order = [i for batch in length_sorted_batches([len(e) for e in encoded], size) for i in batch]
        decode_stream(loaded, encoded, order, params, seeds, stops, size, on_row, on_step=bar.tick,
                      stop_hit=stop_string_matcher(loaded.tokenizer, params.stop))
        if finished:
            flush()
    finally:
        bar.close()
    return [r for r in results if r is not None]


class _Throughput:
    """Reports prompts done and generated tokens/s to a progress function (see ``generate``)."""

    def __init__(self, total: int, progress: bool | Callable[..., None]) -> None:
        from selfaug_compiler.progress import Progress

        self.own = Progress("generate") if progress is True and total else None
        self.report = self.own if self.own is not None else (progress if callable(progress) else None)
        self.total, self.done, self.tokens, self.decoded = total, 0, 0, 0
        self.start = self.last_tick = time.perf_counter()
        if self.report is not None:
            self.report(0, total, unit="prompts")

    def advance(self, n: int, new_tokens: int) -> None:
        self.done += n
        self.tokens += new_tokens
        if self.report is not None:
            rate = self.tokens / max(1e-9, time.perf_counter() - self.start)
            self.report(self.done, self.total, unit="prompts", note=f"{rate:.1f} tok/s")

    def tick(self, new_tokens: int) -> None:
        """A decode step produced ``new_tokens``: report at most once a second with the count of
        prompts unchanged (progress.Progress prints a plain line only once per interval), so a
        batch that decodes for minutes is not silent."""
        self.decoded += new_tokens
        now = time.perf_counter()
        if self.report is not None and now - self.last_tick >= 1.0:
            self.last_tick = now
            rate = self.decoded / max(1e-9, now - self.start)
            self.report(self.done, self.total, unit="prompts", note=f"{self.decoded} tokens decoded, {rate:.1f} tok/s")

    def close(self) -> None:
        if self.own is not None:
            self.own.close()

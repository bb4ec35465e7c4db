"""The batched generation engine on a tiny random model: order, batching invariance, per-row seeds,
stop reasons, progress callback."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from selfaug_compiler.generate.engine import (  # noqa: E402
    Generation, SamplingParams, generate, length_sorted_batches, stop_token_ids,
)
from selfaug_compiler.models.loading import load_model  # noqa: E402
from tests.tiny_models import build_tiny_model  # noqa: E402

PROMPTS = ["hello there", "The quick brown fox jumps over the lazy dog and keeps running far away", "def add",
           "tea", "Question: how many apples are left?", "chess rules please", "weather in spring", "x y z"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = build_tiny_model(tmp_path_factory.mktemp("tiny") / "m")
    return load_model(str(folder), dtype="float32", device="cpu")


def test_sampled_row_is_independent_of_its_batch(tiny):
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=16)
    seeds = [11, 22, 33, 44, 55, 66, 77, 88]
    in_batch = generate(tiny, PROMPTS, params, seeds=seeds, batch_size=8, progress=False)
    for i in (0, 1, 5):
        alone = generate(tiny, [PROMPTS[i]], params, seeds=[seeds[i]], batch_size=1, progress=False)[0]
        assert alone.text == in_batch[i].text and alone.new_tokens == in_batch[i].new_tokens


def test_seed_changes_sample_and_same_seed_repeats(tiny):
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=16)
    a = generate(tiny, ["tea"] * 4, params, seeds=[1, 2, 3, 1], batch_size=4, progress=False)
    assert a[0].text == a[3].text
    assert len({g.text for g in a[:3]}) > 1


def test_greedy_matches_hf_generate_and_batch_size(tiny):
    params = SamplingParams(max_new_tokens=12)
    batched = generate(tiny, PROMPTS, params, batch_size=3, progress=False)
    single = [generate(tiny, [p], params, batch_size=1, progress=False)[0] for p in PROMPTS]
    assert batched == single
    tok = tiny.tokenizer
    enc = tok.apply_chat_template([{"role": "user", "content": PROMPTS[1]}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = tiny.model.generate(**enc, max_new_tokens=12, do_sample=False)
    ref = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert single[1].text == ref
    assert single[1].prompt_tokens == enc["input_ids"].shape[1]


def test_results_in_input_order_and_on_batch_sees_every_index_once(tiny):
    seen: list[int] = []
    calls: list[int] = []

    def on_batch(indices, gens):
        assert all(isinstance(g, Generation) for g in gens) and len(indices) == len(gens)
        seen.extend(indices)
        calls.append(len(indices))

    out = generate(tiny, PROMPTS, SamplingParams(max_new_tokens=4), batch_size=3, on_batch=on_batch, progress=False)
    assert sorted(seen) == list(range(len(PROMPTS))) and calls == [3, 3, 2]
    for i, p in enumerate(PROMPTS):
        assert out[i] == generate(tiny, [p], SamplingParams(max_new_tokens=4), progress=False)[0]


def test_finish_reasons_length_and_stop(tiny):
    out = generate(tiny, PROMPTS[:2], SamplingParams(max_new_tokens=3), progress=False)
    assert all(g.finish_reason == "length" and g.new_tokens == 3 for g in out)
    eos = tiny.tokenizer.eos_token_id
    assert eos in stop_token_ids(tiny)
    # make the end-of-turn token the most likely next token: generation stops at once

    def favour_eos(module, args, output):
        output[..., eos] += 1000.0
        return output

    hook = tiny.model.lm_head.register_forward_hook(favour_eos)
    try:
        stopped = generate(tiny, PROMPTS[:2], SamplingParams(max_new_tokens=5), progress=False)
    finally:
        hook.remove()
    assert all(g.finish_reason == "stop" and g.new_tokens == 0 and g.text == "" for g in stopped)


def test_stop_strings_end_a_row_before_the_string_and_leave_the_others(tiny):
    """A stop string taken from a row's own greedy reply: that row ends just before it (finish
    reason ``stop``, fewer tokens), the rows of its batch that never produce it are unchanged."""
    from selfaug_compiler.generate.engine import cut_at_stop

    params = SamplingParams(max_new_tokens=24)
    free = generate(tiny, PROMPTS, params, batch_size=4, progress=False)
    target = max(range(len(PROMPTS)), key=lambda i: len(free[i].text))
    text = free[target].text
    stop = text[len(text) // 2:len(text) // 2 + 3]
    assert len(stop.strip()) == 3, text
    stopped = generate(tiny, PROMPTS, SamplingParams(max_new_tokens=24, stop=(stop,)), batch_size=4, progress=False)
    assert stopped[target].finish_reason == "stop" and stopped[target].new_tokens < free[target].new_tokens
    assert stopped[target].text == text[:text.index(stop)].strip() and stop not in stopped[target].text
    for i, (a, b) in enumerate(zip(free, stopped)):
        if stop not in a.text:
            assert a == b, i
        else:  # the string shows in this reply too: it ends there as well
            assert b.text == cut_at_stop(a.text, (stop,))[0].strip() and b.finish_reason == "stop"
    assert SamplingParams(stop=["\n"]).to_dict()["stop"] == ["\n"] and "stop" not in SamplingParams().to_dict()


def test_message_lists_and_plain_prompts(tiny):
    msgs = [{"role": "user", "content": "tea"}]
    a = generate(tiny, [msgs], SamplingParams(max_new_tokens=5), progress=False)[0]
    b = generate(tiny, ["tea"], SamplingParams(max_new_tokens=5), progress=False)[0]
    assert a == b
    plain = generate(tiny, ["tea"], SamplingParams(max_new_tokens=5), chat=False, progress=False)[0]
    assert plain.prompt_tokens < a.prompt_tokens


def test_length_sorted_batches():
    assert length_sorted_batches([3, 9, 1, 9, 5], 2) == [[1, 3], [4, 0], [2]]


def _forward_shapes(model):
    shapes: list[tuple[int, int]] = []

    def record(module, args, kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))

    return shapes, model.register_forward_pre_hook(record, with_kwargs=True)


def test_refill_keeps_rows_equal_to_alone_and_to_hf_generate(tiny):
    """Continuous batching: rows stop at different steps, freed slots take the next prompts while
    others still run, and every row equals its batch-1 run (sampled) and model.generate (greedy)."""
    import torch

    from selfaug_compiler.generate.engine import encode_prompt
    from selfaug_compiler.generate.slots import decode_stream

    encoded = [encode_prompt(tiny.tokenizer, p, True) for p in PROMPTS]
    order = list(range(len(PROMPTS)))
    seeds = [5, 6, 7, 8, 9, 10, 11, 12]

    def run(params, stops, size, rows=order):
        got: dict[int, tuple[list[int], str]] = {}
        decode_stream(tiny, encoded, rows, params, seeds, stops, size, lambda i, ids, r: got.__setitem__(i, (ids, r)))
        return got

    greedy = SamplingParams(max_new_tokens=12)
    free_run = run(greedy, set(), 8)
    stops = {free_run[1][0][2], free_run[2][0][2], free_run[3][0][9]}
    shapes, hook = _forward_shapes(tiny.model)
    try:
        batched = run(greedy, stops, 3)
    finally:
        hook.remove()
    assert len({len(ids) for ids, _ in batched.values()}) > 1  # rows really finish at different steps
    decode_sizes = [b for b, width in shapes if width == 1]
    refilled = [k for k in range(1, len(shapes) - 1)
                if shapes[k][1] > 1 and shapes[k - 1][1] == 1 and shapes[k + 1][0] > shapes[k - 1][0]]
    assert refilled and max(decode_sizes) == 3  # a prefill joined rows that were still decoding
    for i in order:
        assert batched[i] == run(greedy, stops, 1, [i])[i]
        enc = torch.tensor([encoded[i]])
        ref = tiny.model.generate(input_ids=enc, attention_mask=torch.ones_like(enc), max_new_tokens=12,
                                  do_sample=False, eos_token_id=sorted(stops), pad_token_id=0)[0, enc.shape[1]:].tolist()
        ids, reason = batched[i]
        assert ref == ids + ([ref[-1]] if reason == "stop" else [])
    sampled = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=12)
    stops = set(range(0, len(tiny.tokenizer), 15))
    together = run(sampled, stops, 3)
    assert len({len(ids) for ids, _ in together.values()}) > 1
    for i in order:
        assert together[i] == run(sampled, stops, 1, [i])[i]


def test_progress_inside_a_batch_reports_decoded_tokens(tiny, monkeypatch):
    """One batch that decodes for a long time still reports: after each decode step (throttled to
    one call a second), with the count of finished prompts unchanged and the tokens decoded."""
    import selfaug_compiler.generate.engine as engine

    clock = iter(range(0, 10_000, 2))  # every reading of the clock is 2 s after the previous one
    monkeypatch.setattr(engine.time, "perf_counter", lambda: float(next(clock)))
    calls: list[tuple[int, str]] = []
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    out = generate(tiny, PROMPTS[:4], params, batch_size=4, progress=lambda done, total, **kw: calls.append((done, kw.get("note", ""))))
    inside = [(done, note) for done, note in calls if "tokens decoded" in note]
    assert inside and all(done < 4 for done, _ in inside)
    decoded = [int(note.split()[0]) for _, note in inside]
    assert decoded == sorted(decoded) and decoded[-1] <= sum(g.new_tokens for g in out) + len(out)
    assert calls[-1][0] == 4

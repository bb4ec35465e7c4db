"""The log-likelihood scorer gives lm-evaluation-harness's numbers on the same model and items.

A tiny random Llama model is saved to tmp_path with a byte-level BPE tokenizer (one variant
adds BOS by default, like Llama tokenizers; one does not, like SmolLM2's). lm_eval's own HFLM
loads the same folder and scores the same requests.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
lm_eval_hf = pytest.importorskip("lm_eval.models.huggingface")

from selfaug_compiler.evaluate.items import MCItem  # noqa: E402
from selfaug_compiler.evaluate.loglik import PairEncoder, loglikelihood, score_multiple_choice  # noqa: E402

CORPUS = [
    "Question: Which gas do plants absorb? Answer: carbon dioxide oxygen nitrogen helium",
    "The man turned on the faucet. Water flowed from the spout. The toilet filled with water.",
    "Sarah was a much better surgeon than Maria so she always got the easier cases.",
    "A. B. C. D. 0 1 2 3 4 5 6 7 8 9 the a of to and in is it that for on with as",
]


def build_tiny(folder, *, add_bos: bool, seed: int = 0):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(CORPUS * 3, trainer=trainer)
    if add_bos:
        core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                            special_tokens=[("<s>", core.token_to_id("<s>"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="</s>")
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=len(tok), max_position_embeddings=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights: sharper distributions, so argmax ties do not happen
        for p in model.parameters():
            p.mul_(4.0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


class Loaded:
    def __init__(self, folder):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.device = "cpu"


ITEMS = [
    MCItem.shared_context("a", "Question: Which gas do plants absorb?\nAnswer:",
                          ["carbon dioxide", "oxygen", "nitrogen", "helium"], 0),
    MCItem.shared_context("b", "The man turned on the faucet.", ["Water flowed from the spout.",
                                                                 "The toilet filled with water."], 1),
    MCItem.shared_context("c", "Trailing space context ", ["A", "B is longer", "C"], 2),
    MCItem.shared_continuation("d", ["Sarah was a much better surgeon than Maria so Sarah",
                                     "Sarah was a much better surgeon than Maria so Maria"],
                               "always got the easier cases.", 0),
    MCItem.shared_context("e", "The following are questions.\n\nQ\nA. x\nB. y\nAnswer:", ["A", "B"], 1),
]


def lm_eval_scores(folder, requests, batch_size):
    from lm_eval.api.instance import Instance

    lm = lm_eval_hf.HFLM(pretrained=str(folder), dtype="float32", device="cpu", batch_size=batch_size)
    insts = [Instance(request_type="loglikelihood", doc={}, arguments=req, idx=i) for i, req in enumerate(requests)]
    return lm, lm.loglikelihood(insts, disable_tqdm=True)


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("add_bos", [False, True])
def test_loglikelihood_equals_lm_eval(tmp_path, add_bos, packed):
    folder = build_tiny(tmp_path / "m", add_bos=add_bos)
    requests = [r for item in ITEMS for r in item.requests] + [("", " carbon dioxide")]
    lm, theirs = lm_eval_scores(folder, requests, batch_size=3)
    loaded = Loaded(folder)
    ours = loglikelihood(loaded, requests, batch_size=4, packed=packed)
    assert len(ours) == len(theirs)
    for (a, ga), (b, gb) in zip(ours, theirs):
        assert math.isclose(a, b, abs_tol=1e-4), (a, b)
        assert ga == gb
    # the same token split as lm_eval's _encode_pair (whitespace moves to the continuation)
    enc = PairEncoder(loaded.tokenizer)
    for ctx, cont in requests[:-1]:
        assert enc.pair(ctx, cont) == tuple(lm._encode_pair(ctx, cont))
    if add_bos:
        assert enc.pair(*requests[0])[0][0] == loaded.tokenizer.bos_token_id


def test_eager_attention_packs_too(tmp_path):
    folder = build_tiny(tmp_path / "m", add_bos=False, seed=5)
    sdpa, eager = Loaded(folder), Loaded(folder)
    eager.model.config._attn_implementation = "eager"
    requests = [r for item in ITEMS for r in item.requests]
    for (a, ga), (b, gb) in zip(loglikelihood(sdpa, requests), loglikelihood(eager, requests)):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-4) and ga == gb


def test_acc_and_acc_norm_equal_lm_eval(tmp_path):
    import numpy as np

    folder = build_tiny(tmp_path / "m", add_bos=False, seed=3)
    requests = [r for item in ITEMS for r in item.requests]
    _, theirs = lm_eval_scores(folder, requests, batch_size=8)
    results = score_multiple_choice(Loaded(folder), ITEMS, batch_size=2)
    pos = 0
    for item, res in zip(ITEMS, results):
        lls = np.array([t[0] for t in theirs[pos:pos + item.n_choices]])
        pos += item.n_choices
        assert res["acc"] == float(np.argmax(lls) == item.gold)
        if item.norm_lengths is not None:
            # lm_eval's acc_norm divides by len(choice) (characters of the choice string)
            assert res["acc_norm"] == float(np.argmax(lls / np.array(item.norm_lengths, float)) == item.gold)
        else:
            assert "acc_norm" not in res
        assert np.allclose(res["lls"], lls, atol=1e-4)


@pytest.mark.parametrize("packed", [True, False])
def test_batch_size_does_not_change_scores(tmp_path, packed):
    folder = build_tiny(tmp_path / "m", add_bos=True)
    loaded = Loaded(folder)
    requests = [r for item in ITEMS for r in item.requests]
    one = loglikelihood(loaded, requests, batch_size=1, packed=packed)
    many = loglikelihood(loaded, requests, batch_size=64, packed=packed)
    for (a, ga), (b, gb) in zip(one, many):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-5) and ga == gb


def full_sequence_scores(loaded, requests):
    """Each request alone: one forward over ctx + cont, the continuation's log-probs summed."""
    out = []
    enc = PairEncoder(loaded.tokenizer)
    with torch.no_grad():
        for ctx_text, cont_text in requests:
            ctx, cont = enc.pair(ctx_text, cont_text)
            ids = torch.tensor([ctx + cont])
            logp = torch.log_softmax(loaded.model(input_ids=ids).logits[0].float(), -1)
            rows = logp[len(ctx) - 1:len(ctx) + len(cont) - 1]
            picked = rows[torch.arange(len(cont)), torch.tensor(cont)]
            out.append((float(picked.sum()), bool((rows.argmax(-1) == torch.tensor(cont)).all())))
    return out


@pytest.mark.parametrize("packed", [True, False])
def test_shared_context_equals_full_sequences(tmp_path, packed):
    """The shared-context paths (packed rows; KV cache) give each full sequence's scores, also
    when several groups share a row (batch of 64 requests) or sit one per batch (batch of 1)."""
    folder = build_tiny(tmp_path / "m", add_bos=True, seed=7)
    loaded = Loaded(folder)
    requests = [r for item in ITEMS for r in item.requests] + [("Short", " one"), ("Short", " two words")]
    want = full_sequence_scores(loaded, requests)
    for batch_size in (1, 5, 64):
        got = loglikelihood(loaded, requests, batch_size=batch_size, packed=packed)
        for (a, ga), (b, gb) in zip(got, want):
            assert abs(a - b) <= 1e-4, (batch_size, a, b)
            assert ga == gb


def test_rows_hold_several_groups():
    from selfaug_compiler.evaluate.loglik_packed import pack_rows

    rows = pack_rows([10, 3, 6, 4, 7])
    assert sorted(i for r in rows for i in r) == [0, 1, 2, 3, 4]
    assert all(sum([10, 3, 6, 4, 7][i] for i in r) <= 10 for r in rows)
    assert len(rows) == 3  # 10 | 7+3 | 6+4


def test_batches_fill_row_gaps_with_later_segments():
    from types import SimpleNamespace

    from selfaug_compiler.evaluate.loglik_packed import packed_batches, segment_length

    # segment length = len(context) + sum(len(cont) - 1): 10, 8, 6, 2, 2 (two continuations each)
    groups = [SimpleNamespace(context=[0] * (n - 2), members=[(k, [1, 2]), (k + 1, [3, 4])])
              for k, n in zip(range(0, 10, 2), (10, 8, 6, 2, 2))]
    plan = packed_batches(groups, batch_size=4)  # the batch is full after two segments...
    first, rows = plan[0]
    lengths = [segment_length(g) for g in first]
    assert [lengths[i] for i in rows[0]] == [10] and sorted(lengths[i] for i in rows[1]) == [2, 8]  # ...one gap filled
    assert all(sum(lengths[i] for i in row) <= max(lengths) for row in rows)
    assert sorted(id(g) for batch, _ in plan for g in batch) == sorted(id(g) for g in groups)


def test_packed_path_without_an_output_embedding_module_scores_the_same(tmp_path):
    """A model whose LM head cannot be hooked gets all logits and the same scores."""
    folder = build_tiny(tmp_path / "m", add_bos=False, seed=9)
    hooked, plain = Loaded(folder), Loaded(folder)
    plain.model.get_output_embeddings = lambda: None
    requests = [r for item in ITEMS for r in item.requests]
    for (a, ga), (b, gb) in zip(loglikelihood(hooked, requests, batch_size=8),
                                loglikelihood(plain, requests, batch_size=8)):
        assert abs(a - b) <= 1e-5 and ga == gb

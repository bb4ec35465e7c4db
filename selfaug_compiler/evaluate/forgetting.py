"""Forgetting metrics and paired significance tests (pure python + numpy/scipy, no torch).

Scores are per-item values in [0, 1] (accuracy 0/1, or any per-item metric), aligned by item id
between the model before and after fine-tuning. Reported in points (× 100):

- ``delta``: after − before.
- ``relative_drop_pct``: (before − after) / before × 100.
- ``normalized_drop``: (before − after) / (before − chance): the share of the above-chance
  ability that was lost (None when before is at or below chance).
- McNemar's exact test on the discordant pairs (binary items): b = right before and wrong after,
  c = wrong before and right after, p = min(1, 2·P[X ≤ min(b, c)]), X ~ Binomial(b + c, ½).
- A paired bootstrap CI of the difference of means (items resampled together; seeded).

Continual forgetting (Luo et al., arXiv 2308.08747): FG = mean over benchmarks and the N
checkpoints of (R₀ − Rₘ)/R₀ × 100.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

ALPHA = 0.05


@dataclass
class McNemar:
    b: int  # right before, wrong after
    c: int  # wrong before, right after
    p_value: float


@dataclass
class Comparison:
    n: int
    before: float  # points
    after: float
    delta: float
    relative_drop_pct: float | None
    normalized_drop: float | None
    chance: float
    ci_low: float  # paired bootstrap CI of delta, points
    ci_high: float
    mcnemar: McNemar | None
    p_value: float | None
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_exact(before: Sequence[float], after: Sequence[float]) -> McNemar:
    """Exact two-sided McNemar test for paired binary outcomes."""
    from scipy.stats import binom

    b = sum(1 for x, y in zip(before, after) if x >= 0.5 > y)
    c = sum(1 for x, y in zip(before, after) if y >= 0.5 > x)
    n = b + c
    p = 1.0 if n == 0 else min(1.0, 2.0 * float(binom.cdf(min(b, c), n, 0.5)))
    return McNemar(b, c, p)


def paired_bootstrap_ci(before: Sequence[float], after: Sequence[float], *, seed: int = 0,
                        n_boot: int = 2000, alpha: float = ALPHA) -> tuple[float, float]:
    """Percentile CI of mean(after − before) with items resampled in pairs (fractions, not points)."""
    import numpy as np

    diff = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    if diff.size == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(n_boot, diff.size))
    means = diff[idx].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0, 1, 0.0, 1.0, True, False) for v in values)


def align(before: Mapping[str, float], after: Mapping[str, float]) -> tuple[list[str], list[float], list[float]]:
    """Items present in both runs, in the order of ``before``."""
    ids = [k for k in before if k in after]
    return ids, [float(before[k]) for k in ids], [float(after[k]) for k in ids]


def compare(before: Sequence[float], after: Sequence[float], *, chance: float = 0.0, seed: int = 0,
            n_boot: int = 2000, alpha: float = ALPHA) -> Comparison:
    """Before/after on the same items: Δ, relative and normalized drop, paired tests."""
    if len(before) != len(after):
        raise ValueError(f"paired scores differ in length: {len(before)} vs {len(after)}")
    n = len(before)
    mb = sum(before) / n if n else 0.0
    ma = sum(after) / n if n else 0.0
    low, high = paired_bootstrap_ci(before, after, seed=seed, n_boot=n_boot, alpha=alpha)
    test = mcnemar_exact(before, after) if is_binary(before) and is_binary(after) else None
    if test is not None:
        p_value, significant = test.p_value, test.p_value < alpha
    else:
        p_value, significant = None, (low > 0 or high < 0)
    return Comparison(
        n=n, before=100 * mb, after=100 * ma, delta=100 * (ma - mb),
        relative_drop_pct=(100 * (mb - ma) / mb) if mb > 0 else None,
        normalized_drop=((mb - ma) / (mb - chance)) if mb - chance > 1e-12 else None,
        chance=100 * chance, ci_low=100 * low, ci_high=100 * high, mcnemar=test, p_value=p_value,
        significant=bool(significant),
    )


def compare_items(before: Mapping[str, float], after: Mapping[str, float], **kwargs: Any) -> Comparison:
    """``compare`` on per-item scores keyed by item id (only items both runs scored)."""
    _, b, a = align(before, after)
    return compare(b, a, **kwargs)


def continual_forgetting(r0: Mapping[str, float], checkpoints: Sequence[Mapping[str, float]]) -> float | None:
    """FG (%): mean over benchmarks and checkpoints of (R₀ − Rₘ)/R₀ × 100.

    ``r0``: benchmark → score of the base model; ``checkpoints``: one such mapping per stage.
    Benchmarks with R₀ = 0 (no ability to lose) or missing at a checkpoint are left out.
    """
    terms = [(r0[name] - stage[name]) / r0[name] * 100.0
             for stage in checkpoints for name in r0 if r0[name] > 0 and name in stage]
    return sum(terms) / len(terms) if terms else None

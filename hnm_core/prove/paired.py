"""How sure a proof is: paired bootstrap intervals of one arm's nDCG@10 minus another's over the test queries.

Dror et al. (2018) ask for a paired test over test queries rather than a mean and spread over seeds: both arms are
scored on the same queries, so the per-query difference cancels how hard each query is. The bootstrap resamples the
test queries with replacement and, with several seeds, the seeds too (each arm paired with the other's run of the
same seed; `zero`, untrained, is the same for every seed), 10,000 times from a fixed seed, and reports the mean
difference with the 2.5th and 97.5th percentiles of the resampled means. A win is an interval above zero.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .result import ArmRun

__all__ = ["Comparison", "compare", "REFERENCES"]

REFERENCES = ("naive", "pairs")
"""The arms every other arm is compared with."""
_RESAMPLING_SEED = 0  # fixed, so a table's intervals are the same bytes on every rerun


@dataclass(frozen=True)
class Comparison:
    """arm - against, on `metric`, averaged over `queries` test queries and `seeds`, with a 95% interval."""

    arm: str
    against: str
    metric: str
    diff: float
    low: float
    high: float
    seeds: tuple[int, ...]
    queries: int

    @property
    def verdict(self) -> str:
        """"win" when the interval lies above zero, "loss" below it, else "level" (a difference noise can make)."""
        return "win" if self.low > 0 else "loss" if self.high < 0 else "level"

    def cells(self) -> list[str]:
        points = lambda x: f"{100 * x:+.2f}"
        return [f"{self.arm} - {self.against}", points(self.diff), f"[{points(self.low)}, {points(self.high)}]",
                self.verdict, str(len(self.seeds))]


def compare(runs: Sequence[ArmRun], *, metric: str = "ndcg@10", references: Sequence[str] = REFERENCES,
            arms: Collection[str] | None = None, samples: int = 10_000) -> tuple[Comparison, ...]:
    """Every arm (of `arms`, when given) against each of `references` that ran (in the order first seen), where
    both have per-query figures on the same test queries and a seed in common (or one of them is `zero`)."""
    by_arm: dict[str, dict[int, np.ndarray]] = {}
    for run in runs:
        if run.per_query:
            by_arm.setdefault(run.arm, {})[run.seed] = np.asarray(run.per_query, dtype=np.float64)
    out = []
    for against in references:
        if against not in by_arm:
            continue
        for arm, seeds in by_arm.items():
            if arm == against or (arms is not None and arm not in arms):
                continue
            pairs = _paired(seeds, by_arm[against], arm == "zero", against == "zero")
            if not pairs:
                continue
            common = tuple(sorted(pairs))
            diffs = np.vstack([pairs[s] for s in common])
            low, high = _interval(diffs, samples)
            out.append(Comparison(arm, against, metric, float(diffs.mean()), low, high, common, diffs.shape[1]))
    return tuple(out)


def _paired(a: dict[int, np.ndarray], b: dict[int, np.ndarray], a_fixed: bool,
            b_fixed: bool) -> dict[int, np.ndarray]:
    """seed -> per-query a - b, for the seeds both ran; an untrained (`fixed`) arm's one run pairs with every seed."""
    if a_fixed or b_fixed:
        seeds = set(b) if a_fixed and not b_fixed else set(a)
    else:
        seeds = set(a) & set(b)
    pick = lambda runs, fixed, s: next(iter(runs.values())) if fixed else runs[s]
    out = {}
    for s in seeds:
        x, y = pick(a, a_fixed, s), pick(b, b_fixed, s)
        if len(x) == len(y):
            out[s] = x - y
    return out


def _interval(diffs: np.ndarray, samples: int) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of the mean of `diffs` (seeds x queries) over resampled seeds and queries."""
    n_seeds, n_queries = diffs.shape
    rng = np.random.default_rng(_RESAMPLING_SEED)
    query_weights = rng.multinomial(n_queries, np.full(n_queries, 1 / n_queries), size=samples) / n_queries
    if n_seeds > 1:
        seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=samples) / n_seeds
    else:
        seed_weights = np.ones((samples, 1))
    means = np.einsum("bs,sq,bq->b", seed_weights, diffs, query_weights)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)

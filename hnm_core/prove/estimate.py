"""How long a proof will take, before it runs: a few seconds per encoded text and per trained text, counted from the
collection's splits and the settings (what the Train page says beside Run proof).

The paces are measured, fp32 all-MiniLM-L6-v2 on two Xeon cores (docs/proof.md): adi's arms of 100 pairs took 1.5
to 2 minutes a seed, TIME's of 194 pairs 2.4 to 3.9, a SciFact arm of ~920 pairs about 26. A GPU is many times
faster; arms the proof folder already holds are reused and cost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..settings import setting

__all__ = ["ENCODE_TEXTS_PER_S", "TRAIN_TEXTS_PER_S", "PROOF_SETTINGS", "ProofEstimate", "estimate_proof",
           "estimate_from_data"]

# Texts a second on two CPU cores, fp32 MiniLM: encoding (the corpus and queries of every evaluation, the hnm and
# naive arms' mining) and training (forward and backward over a row's anchor, positive and negatives).
ENCODE_TEXTS_PER_S = 20.0
TRAIN_TEXTS_PER_S = 4.5


# The settings estimate_from_data reads.
PROOF_SETTINGS = ("train_split", "test_split", "split_queries", "cross_fit", "max_pairs", "arms", "seeds", "epochs",
                  "negatives", "rounds")


@dataclass(frozen=True)
class ProofEstimate:
    """The expected wall time of a proof and what it is made of."""

    minutes: float
    trainings: int
    rows: int
    evaluations: int
    test_queries: int
    documents: int

    def sentence(self) -> str:
        took = f"{self.minutes:.0f} min" if self.minutes >= 1.5 else "a minute or less"
        return (f"About {took} on two CPU cores: {self.trainings} training run(s) of up to {self.rows:,} rows and "
                f"{self.evaluations} evaluation(s) on {self.test_queries:,} test queries over {self.documents:,} "
                "documents. Arms already in the proof folder are reused; a GPU is many times faster.")


def estimate_proof(*, documents: int, test_queries: int, train_rows: int, arms: list[str] | tuple[str, ...],
                   seeds: int, epochs: int, negatives: int, variants: int = 0,
                   rounds: int = setting("rounds").default, cross_fit: int | None = None) -> ProofEstimate:
    """The estimate for `arms` (zero, pairs, naive, hnm) plus `variants` more hnm arms, each trained once per seed
    (zero only evaluated) for `epochs` over `train_rows` rows: a pairs row is 2 texts, a mined row 2 + `negatives`.
    Every arm and seed is scored once over the corpus and the test queries; naive and hnm mine the corpus once.
    Cross-fitted (`cross_fit` folds), all of it once per fold, and each fold scores its share of `test_queries`."""
    folds = cross_fit or 1
    mined = [a for a in arms if a in ("naive", "hnm")] + ["variant"] * variants
    trained = [a for a in arms if a == "pairs"] + mined
    train_texts = sum(2 if arm == "pairs" else 2 + negatives for arm in trained) * train_rows * epochs * seeds
    train_texts += (rounds - 1) * (2 + negatives) * train_rows * epochs * seeds if "hnm" in arms else 0
    evaluations = (len(arms) + variants) * (seeds if len(trained) else 1)
    encode_texts = evaluations * (documents + test_queries / folds) + (documents if mined else 0)
    seconds = folds * (train_texts / TRAIN_TEXTS_PER_S + encode_texts / ENCODE_TEXTS_PER_S)
    return ProofEstimate(seconds / 60, len(trained) * seeds * folds, train_rows, evaluations * folds, test_queries,
                         documents)


def estimate_from_data(data: str | Path, values: Mapping[str, Any], variants: int = 0) -> ProofEstimate:
    """estimate_proof for the proof `prove(data, ..., values)` would run: documents, training pairs (capped by
    max_pairs, less the held-out share) and test queries counted from the collection's splits."""
    from ..data import load_collection
    from ..settings import defaults
    from .splits import source_split

    values = {**defaults(), **{k: v for k, v in values.items() if k in PROOF_SETTINGS}}
    share, folds = values.get("split_queries"), values.get("cross_fit")
    train = load_collection(data, split=source_split(data, values["train_split"]) if share or folds
                            else values["train_split"])
    pairs = sum(len(train.positives[q]) for q in train.query_ids)
    if folds:  # each fold of the judged queries is the test once, the others trained on
        test_queries = sum(1 for q in train.query_ids if train.positives.get(q))
        pairs = round(pairs * (folds - 1) / folds)
    elif share:  # a seeded share of the training queries is the test
        test_queries = round(len(train.query_ids) * share)
        pairs = round(pairs * (1 - share))
    else:
        test_queries = len(load_collection(data, split=values["test_split"]).query_ids)
    if values.get("max_pairs"):
        pairs = min(pairs, values["max_pairs"])
    return estimate_proof(documents=len(train.doc_ids), test_queries=test_queries, train_rows=pairs,
                          arms=tuple(values["arms"]), seeds=len(values["seeds"]), epochs=values["epochs"],
                          negatives=values["negatives"], variants=variants, rounds=values["rounds"], cross_fit=folds)

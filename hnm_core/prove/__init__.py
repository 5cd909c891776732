"""Stages 8 and 9, train -> evaluate -> prove: does a model trained on hnm's export retrieve better? The proof loop of docs/proof.md.

One collection, a training split and a test split (the queries both hold are left out of training), or one labelled
set whose judged queries a seeded split divides (`split_queries`) or seeded folds cross-fit (`cross_fit`: each fold
scored by models trained on the others, every judged query a test query once, the folds' figures pooled per arm and
seed: result.pool_folds); every arm trains the same bi-encoder (setting
`train_model`) with the same recipe (the `train` settings: train.train_model) and seed, and is scored on the test
queries (evaluate.evaluate: nDCG@10, Recall@100, MRR@10):

    zero   the base model, untrained
    pairs  (query, labelled positive) pairs only: the other rows of a batch are the negatives
    naive  sentence-transformers' own `mine_hard_negatives` on those pairs with the base model: dense top-k, `negatives`
           per pair as an n-tuple, positives left out and no other false-negative rule (the protocol's st_mined arm)
    hnm    this curation's ntuple export of the training split (mine -> curate -> export with the given settings)
    NAME   a variant: hnm with some pool, teacher or curate settings changed (`variants`); variants that change the
           curation only are curated from the hnm arm's pool

`seeds` repeats every trained arm. The table reports the mean and spread over seeds, and for every arm against naive
and against pairs the paired bootstrap interval of the nDCG@10 difference over the test queries and seeds
(paired.py): a win is an interval above zero. With `select_split` (a dev split) or `select_queries` (a share of the
training queries held out), hnm and its variants are also scored there and the best is the proof's selection, made
without the test queries. `rounds` 2 re-mines the training split with each seed's round-1 hnm model as the
bi-encoder (and as the teacher when the teacher is the bi-encoder), trains on from that checkpoint (arm
`hnm-round2`), and compares the two exports (rounds.diff_rounds).

The output folder is a cache as much as a report: each trained model lives in arms/ under a key made of its training
file's digest, the base model's fingerprint, the recipe and the seed, so a rerun, or a table extended by an arm, a
variant or a seed, trains only what it lacks. Folder written (`out_dir`):

    prove.json    settings, splits, variants, per-seed figures (with each test query's nDCG@10), means and spreads,
                  the paired comparisons, the selection, rows per arm, keys and model fingerprints
    table.txt     the printed table
    data/         the training files: pairs/, naive/, hnm/ and one per variant (an hnm export with its labelled
                  pool), hnm-round2-seed<s>/; cross-fitted, under one fold-<k>/ per fold
    arms/         one model folder (train.py's) per trained arm and seed, named <arm>-seed<s>-<key>

Modules: train.py (fine-tune a bi-encoder on an export, the protocol's recipe), evaluate.py (nDCG@10, Recall@100,
MRR@10 on a labelled split), rounds.py (how two exports' negatives differ), loop.py (prove), splits.py (which
queries), files.py (the training files), paired.py (the intervals), result.py (the table and prove.json).
"""

from .evaluate import EvalResult, evaluate, load_eval_collection
from .loop import ARMS, STAGES, VARIANT_STAGES, check_variants, prove
from .paired import Comparison, compare
from .result import HEADLINE, ArmRun, ArmSummary, ProofResult, load_proof, pool_folds, summarise
from .rounds import RoundDiff, diff_rounds
from .splits import (
    QuerySplit,
    fold_queries,
    scoring_splits,
    selection_splits,
    shared_queries,
    split_queries,
    without_queries,
)
from .train import TrainResult, train_model

__all__ = ["ARMS", "HEADLINE", "STAGES", "VARIANT_STAGES", "ArmRun", "ArmSummary", "ProofResult", "Comparison",
           "QuerySplit", "prove", "check_variants", "summarise", "pool_folds", "compare", "load_proof",
           "shared_queries", "without_queries", "scoring_splits", "selection_splits", "split_queries", "fold_queries",
           "EvalResult", "evaluate", "load_eval_collection", "RoundDiff", "diff_rounds", "TrainResult", "train_model"]

"""The proof commands of `hnm`: train, eval, prove (and their parsers, which share the proof's settings)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from ..prove import STAGES as PROVE_STAGES
from ..wording import counted
from .flags import add_settings, progress_for, settings_from_args

__all__ = ["add_proof_commands"]


def add_proof_commands(sub: Any) -> None:
    p = sub.add_parser("train", help="fine-tune a bi-encoder on an export (MNRL on ntuple, MarginMSE on "
                                     "ntuple_scores), with the proof protocol's recipe")
    p.add_argument("export_dir", type=Path, help="an export folder (or one ntuple / ntuple_scores file)")
    p.add_argument("--out", type=Path, required=True, help="the model folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where the training's checkpoints are kept until it ends (default: $HNM_CACHE_DIR or "
                        "~/.cache/hnm)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_settings(p, ("run", "train"))
    p.set_defaults(run=_run_train)

    p = sub.add_parser("eval", help="nDCG@10, Recall@100 and MRR@10 of a bi-encoder on a BEIR split, as "
                                    "sentence-transformers' InformationRetrievalEvaluator computes them")
    p.add_argument("model", help="a sentence-transformers name or model folder (e.g. the output of `hnm train`)")
    p.add_argument("data", type=Path, help="a BEIR folder (or a pairs / FlagEmbedding file)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="embedding cache (default: $HNM_CACHE_DIR or ~/.cache/hnm)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_settings(p, ("data", "eval"), also=("batch_size",))
    p.set_defaults(run=_run_eval)

    p = sub.add_parser("prove", help="the proof loop: train the same model with the same recipe on pairs only, on "
                                     "naively mined negatives and on this curation's export, and score each on a "
                                     "test split")
    p.add_argument("data", type=Path, help="a BEIR folder with a training and a test split")
    p.add_argument("--out", type=Path, required=True,
                   help="the proof folder; a rerun into it trains only the arms and seeds it does not hold yet")
    p.add_argument("--config", type=Path, help="replay the settings of a manifest.json (flags still win)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="embedding and score cache (default: $HNM_CACHE_DIR or ~/.cache/hnm)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                   help="one more arm: hnm with these pool, teacher or curate flags (repeatable), e.g. "
                        "--variant mean='--margin-ref mean'; curated from the hnm arm's pool when only curate "
                        "flags differ")
    add_settings(p, PROVE_STAGES)
    p.set_defaults(run=_run_prove)


def _run_train(args: argparse.Namespace) -> int:
    from ..prove.train import train_model

    values = settings_from_args(args, ("run", "train"))
    result = train_model(args.export_dir, args.out, model=values["train_model"], loss=values["loss"],
                         epochs=values["epochs"], batch_size=values["train_batch_size"], lr=values["lr"],
                         warmup_ratio=values["warmup_ratio"], seed=values["seed"], max_pairs=values["max_pairs"],
                         precision=values["train_precision"], checkpoint_minutes=values["checkpoint_minutes"],
                         cache_dir=args.cache_dir, overwrite=args.overwrite,
                         extra_manifest={"command": " ".join(["hnm", *sys.argv[1:]]) if sys.argv else "hnm train"},
                         progress=progress_for(args))
    resumed = result.manifest["resumed_from_step"]
    print(f"Trained {counted(result.steps, 'step')} on {counted(result.rows, 'row')} in {result.seconds:,.0f} s "
          f"(mean loss {result.training_loss:.4f}{f'; resumed at step {resumed:,}' if resumed else ''}); model saved "
          f"to {result.out_dir}")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from ..prove.evaluate import evaluate, load_eval_collection

    values = settings_from_args(args, ("data", "eval"), also=("batch_size",))
    collection = load_eval_collection(args.data, split=values["split"])
    for line in collection.problems:  # stdout is the JSON under --json
        print(line, file=sys.stderr if args.json else sys.stdout)
    result = evaluate(args.model, collection, precision=values["eval_precision"], batch_size=values["batch_size"],
                      cache_dir=args.cache_dir, progress=progress_for(args))
    print(result.to_json() if args.json else result.table())
    return 0


def _run_prove(args: argparse.Namespace) -> int:
    from ..prove import VARIANT_STAGES, prove
    from ..prove.variants import parse_variant

    variants = dict(parse_variant(text, VARIANT_STAGES) for text in args.variant)
    if len(variants) < len(args.variant):
        raise SettingsError("--variant: two variants have one name. Fix: give each its own")
    result = prove(args.data, args.out, settings_from_args(args, PROVE_STAGES), variants=variants, cache_dir=args.cache_dir,
                   progress=progress_for(args))
    print(result.table())
    for seed, diff in result.rounds.items():
        print(f"Round 2 (seed {seed}): {diff['overlap']:,} of {counted(diff['a_selected'], 'round-1 negative')} kept, "
              f"{diff['new_in_b']:,} new, Jaccard {diff['jaccard']:.3f}")
    print(f"{counted(result.trained, 'arm run')} trained, {len(result.runs) - result.trained} reused or untrained; "
          f"prove.json saved to {result.out_dir}")
    return 0

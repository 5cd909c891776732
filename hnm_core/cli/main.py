"""`hnm`: the command line over the same pipeline as the app.

    hnm pool DATA --out DIR        build the candidate pool (BM25 + dense, with provenance) and save it
    hnm mine DATA --out DIR        pool -> teacher -> curate -> export, headless
    hnm curate POOL_DIR --out DIR  re-curate a saved pool with other settings, nothing recomputed
    hnm review POOL_DIR --out FILE the review queue: candidates to judge, drawn so the verdicts measure the export
    hnm estimate POOL_DIR FILE     the share of exported negatives that are unlabelled positives, from the verdicts
    hnm diff ROUND_A ROUND_B       compare two exports (mining rounds)
    hnm audit DATA --out DIR       hide labelled positives, mine, measure the false-negative leak, recommend
    hnm train-teacher DATA --out DIR  train a cross-fitted teacher on the labels (for --teacher-model)
    hnm train EXPORT --out DIR     fine-tune a bi-encoder on an export (the proof protocol's recipe)
    hnm eval MODEL DATA            nDCG@10, Recall@100, MRR@10 of a bi-encoder on a BEIR split
    hnm prove DATA --out DIR       train zero / pairs / naive / hnm arms alike and compare them on a test split
    hnm studio [DATA] [--port N]   start the studio in the browser, DATA loaded in every new session

Every setting of settings.py is a flag (`--top-k`, `--relative-margin`...); `--config manifest.json` replays the
settings of an earlier run, and flags given on the command line win over it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..curate.overrides import OVERRIDES_FILE
from ..errors import HnmError, HnmWarning
from ..outputs.lock import claim
from ..storage import check_cache_dir, disk_full, is_disk_full
from .flags import add_settings, common_flags, embedding_file_flags, overrides_flag
from .mining import (
    AUDIT_STAGES,
    run_audit,
    run_curate,
    run_diff,
    run_mine,
    run_pool,
    run_train_teacher,
)
from .proving import add_proof_commands
from .review import add_review_commands

__all__ = ["main", "build_parser"]



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hnm", description="Hard-negative mining for text-embedding training sets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("pool", help="build and save the candidate pool (BM25 + dense top-K, minus positives)")
    common_flags(p)
    add_settings(p, ("data", "run", "pool"))
    embedding_file_flags(p)
    p.set_defaults(run=run_pool)

    p = sub.add_parser("mine", help="pool -> teacher -> curate -> export, headless")
    common_flags(p)
    overrides_flag(p, "apply to the curation; a copy is kept beside the saved pool")
    add_settings(p, ("data", "run", "engine", "pool", "teacher", "curate", "export"))
    embedding_file_flags(p)
    p.set_defaults(run=run_mine)

    p = sub.add_parser("curate", help="re-curate a saved pool (from `hnm pool` or `hnm mine`) without recomputing")
    p.add_argument("pool_dir", type=Path, help="a pool folder, or the output folder of `hnm mine`")
    common_flags(p, data=False)
    overrides_flag(p, f"apply to the curation (default: POOL_DIR/{OVERRIDES_FILE} when it exists)")
    add_settings(p, ("run", "engine", "curate", "export"))
    p.set_defaults(run=run_curate)
    add_review_commands(sub)

    p = sub.add_parser("diff", help="compare two mining rounds (export folders)")
    p.add_argument("round_a", type=Path)
    p.add_argument("round_b", type=Path)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--allow-different-collections", action="store_true",
                   help="compare rounds whose manifests name different collections (refused by default)")
    p.set_defaults(run=run_diff)

    p = sub.add_parser("audit", help="hide some labelled positives, mine, and measure how many come back as "
                                     "negatives, over a sweep of the false-negative settings")
    common_flags(p)
    overrides_flag(p, "count its unlabelled positives as known false negatives and say how many the rules catch")
    add_settings(p, AUDIT_STAGES)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--train-teacher", type=Path, metavar="TEACHER_DIR",
                   help="train the teacher (hnm train-teacher, with its flags) on the visible "
                        "positives only, into this folder (resumable), and audit with it")
    p.set_defaults(run=run_audit)

    p = sub.add_parser("train-teacher", help="train a teacher (a cross-encoder, or a fine-tuned bi-encoder with "
                                             "--teacher-kind bi-encoder) on the labelled positives, cross-fitted "
                                             "over queries; mine with it through --teacher <kind> --teacher-model OUT")
    common_flags(p)
    overrides_flag(p, "teach: unlabelled positives as positives, confirmed and bad negatives as negatives, each "
                      "query's only to the folds that never score it")
    # the pool settings choose the retrieval the teacher's negatives come from
    add_settings(p, ("data", "run", "pool", "teacher_train"), also=("checkpoint_minutes",))
    p.set_defaults(run=run_train_teacher)
    add_proof_commands(sub)

    p = sub.add_parser("studio", help="start the studio (Streamlit) in the browser, optionally with DATA loaded")
    p.add_argument("data", nargs="?", default=None, help="a collection every new session starts with (as DATA "
                                                          "above)")
    p.add_argument("--port", type=int, default=None, help="port to serve on (default: Streamlit's 8501)")
    p.add_argument("--split", default=None, help="split DATA is read with (default: the studio's)")
    p.set_defaults(run=_cmd_studio)
    return parser


def _cmd_studio(args: argparse.Namespace) -> int:
    from .studio import run_studio

    run_studio(args.data, port=args.port, split=args.split)
    return 0


def __one_line_warning(command: str, default: Callable[..., None]) -> Callable[..., None]:
    """hnm's own warnings (a damaged cache file being recomputed...) as one line on stderr, like its errors."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, HnmWarning):
            print(f"hnm {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


# The commands that write the embedding and score cache (`hnm curate` only reads it)
_CACHE_WRITERS = {"pool", "mine", "audit", "train-teacher", "eval", "prove"}


@contextlib.contextmanager
def _before_any_work(args: argparse.Namespace) -> Iterator[None]:
    """A cache folder hnm cannot write is refused now, not at the first cache write; --out is held for the whole
    run, so a second run writing it is refused now, not after its computation."""
    if args.command in _CACHE_WRITERS:
        check_cache_dir(args.cache_dir)
    out = getattr(args, "out", None)
    with claim(out) if out is not None else contextlib.nullcontext():
        yield


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(), _before_any_work(args):
            warnings.showwarning = __one_line_warning(args.command, warnings.showwarning)
            return args.run(args)
    except HnmError as error:
        print(f"hnm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk where no writer could say what it kept (a folder made in the cache...)
        if not is_disk_full(error):
            raise
        said = (disk_full(Path(error.filename)) if error.filename else "no space left on the device. Fix: free space "
                "on the disk hnm writes to, or write to another disk (--out, --cache-dir)")
        print(f"hnm {args.command}: error: {said}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        trains = args.command in ("train", "prove", "train-teacher")
        kept = "finished chunks and the training's last checkpoint are cached" if trains else "finished chunks are cached"
        print(f"hnm {args.command}: interrupted; {kept} and the same command resumes", file=sys.stderr)
        return 130



"""The review commands of `hnm`: `hnm review` writes the review queue of a saved pool as a CSV a person fills, and
`hnm estimate` reads it back filled and says how many of the exported negatives are unlabelled positives
(docs/review.md). `hnm curate --overrides FILE` and `hnm train-teacher --overrides FILE` read the same file."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import ExportError, SettingsError
from ..settings import Stage, setting
from ..wording import counted
from .flags import add_settings, common_flags, overrides_flag, progress_for, say, settings_from_args

__all__ = ["add_review_commands", "run_review", "run_estimate"]

REVIEW_STAGES: tuple[Stage, ...] = ("run", "curate", "review")


def add_review_commands(sub: Any) -> None:
    p = sub.add_parser("review", help="write the review queue of a saved pool: the candidates a verdict teaches "
                                      "most about, drawn so that verdicts on its first N also estimate the share "
                                      "of unlabelled positives in the export")
    p.add_argument("pool_dir", type=Path, help="a pool folder, or the output folder of `hnm mine`")
    common_flags(p, data=False)
    overrides_flag(p, "show in the file's `earlier` column (default: POOL_DIR/overrides.jsonl when it exists); an "
                      "empty verdict takes the earlier one up to the last draw you answer")
    p.set_defaults(run=run_review)
    _queue_flags(p)

    p = sub.add_parser("estimate", help="read a filled review file back: the share of exported negatives that are "
                                        "unlabelled positives, with its 95%% interval, at the current settings and "
                                        "over the audit's grid")
    p.add_argument("pool_dir", type=Path, help="the pool `hnm review` drew the file from")
    p.add_argument("file", type=Path, help="the review file, its verdict column filled")
    p.add_argument("--config", type=Path, help="replay the settings of a manifest.json (flags still win)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the estimates as JSON")
    p.add_argument("--audit", type=Path, metavar="AUDIT_DIR", default=None,
                   help="an `hnm audit` folder run with the same curate settings: recommend the hardest setting "
                        "whose audit leak and estimated unlabelled positives both stay under its target")
    p.set_defaults(run=run_estimate)
    _queue_flags(p)


def _queue_flags(p: argparse.ArgumentParser) -> None:
    add_settings(p, REVIEW_STAGES)
    size = setting("review_size")

    def count(text: str) -> int:
        try:
            return size.check(text)
        except SettingsError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    p.add_argument("--n", dest="review_size", type=count, default=argparse.SUPPRESS, metavar="N",
                   help="the same as --review-size")


class _Drawn(NamedTuple):
    folder: Path
    pool: Any
    values: dict[str, Any]
    curation: Any
    exports: list[np.ndarray]
    queue: Any


def _draw(args: argparse.Namespace) -> _Drawn:
    """The pool of `args.pool_dir` and its review queue at the settings the command line gives (the pool's own
    stand in for the defaults, as in `hnm curate`). The rules alone: a person's verdicts are not applied, so the
    estimate measures what the rules export."""
    from ..audit.verdicts import grid_exports
    from ..curate.review import review_queue
    from ..curate.rules import CurateParams, curate
    from ..pool import load_pool

    folder = args.pool_dir / "pool" if (args.pool_dir / "pool" / "manifest.json").exists() else args.pool_dir
    pool = load_pool(folder)
    values = settings_from_args(args, REVIEW_STAGES, base=pool.meta.get("settings"))
    params = CurateParams.from_settings(values)
    curation = curate(pool.frame, params)
    exports = (grid_exports(pool.frame, params, progress=progress_for(args)) if values["review_grid"] > 0 else [])
    queue = review_queue(pool.frame, curation, exports=exports, size=values["review_size"],
                         seed=values["review_seed"], floor=values["review_floor"], grid=values["review_grid"])
    return _Drawn(folder, pool, values, curation, exports, queue)


def run_review(args: argparse.Namespace) -> int:
    from ..curate.overrides import default_path, read_overrides
    from ..curate.review_file import write_review_file

    out = args.out.expanduser()
    if out.suffix.lower() != ".csv":
        raise ExportError(f"{out}: the review file is a CSV. Fix: name it with .csv (review.csv)")
    if out.exists() and not args.overwrite:
        raise ExportError(f"{out} exists and may hold your verdicts. Fix: choose another --out, or pass --overwrite")
    drawn = _draw(args)
    earlier = read_overrides(args.overrides or default_path(drawn.folder), drawn.pool.collection,
                             missing_ok=args.overrides is None)
    written = write_review_file(out, drawn.queue, drawn.pool.frame, drawn.pool.collection, earlier)
    print(drawn.queue.sentence())
    table = drawn.queue.table
    shown = sum(earlier.get(q, d) is not None for q, d in set(zip(table["query_id"], table["doc_id"])))
    if shown:
        print(f"{counted(shown, 'drawn candidate')} already had a verdict in {earlier.path}: see the earlier column "
              f"of {written} (an empty verdict takes it, up to the last draw you answer).")
    print(f"Review file written to {out}. Fill its verdict column (unlabelled_positive, bad_negative or "
          f"confirmed_negative; empty = not reviewed), in order from the top, then `hnm estimate {args.pool_dir} "
          f"{out}` (with the same settings) and `hnm curate {args.pool_dir} --overrides {out} --out DIR`.")
    return 0


def run_estimate(args: argparse.Namespace) -> int:
    from ..curate.estimate import estimate_share, estimate_table
    from ..curate.review_file import draws_matching, read_review_file

    drawn = _draw(args)
    queue = drawn.queue
    reviewed = draws_matching(read_review_file(args.file, drawn.pool.collection), queue, args.file)
    design = {"population": queue.population, "probability": queue.probability}
    current = estimate_share(reviewed, np.flatnonzero(drawn.curation.selected), **design)
    out: dict[str, Any] = {"current": dataclasses.asdict(current), "grid": None, "recommendation": None}
    lines = [current.sentence()]
    if drawn.exports:
        table = estimate_table(reviewed, drawn.exports, **design)
        out["grid"] = {"settings": len(table), "lowest_share": float(table["share"].min()),
                       "highest_share": float(table["share"].max())}
        lines.append(f"Over the {len(table):,} settings of the audit's grid the estimate runs from "
                     f"{table['share'].min():.1%} to {table['share'].max():.1%}.")
        if args.audit is not None:
            out["recommendation"] = _recommend(args.audit, table, drawn.values)
            lines.append(f"Recommended: {out['recommendation']['flags']}: {out['recommendation']['reason']}.")
    elif args.audit is not None:
        raise SettingsError("--audit needs the estimate over the audit's grid. Fix: drop --review-grid 0 (draw the "
                            "review file with the grid)")
    if args.json:
        print(json.dumps(out, indent=2, default=float))
    else:
        say(lines)
    return 0


def _recommend(folder: Path, estimates: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The pick over an audit folder's sweep.csv, whose rows must be the grid the estimates were made at."""
    import pandas as pd

    from ..audit.sweep import grid_points
    from ..audit.verdicts import pick_with_verdicts
    from ..curate.rules import CurateParams
    from ..errors import DataError

    try:
        table = pd.read_csv(folder / "sweep.csv")
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(folder, f"not an hnm audit folder ({error}).", fix="give the --out folder of `hnm audit`")
    axes, points = grid_points(CurateParams.from_settings(values))
    same = len(points) == len(table) and all(
        (pd.isna(row) and getattr(p, name) is None) or row == getattr(p, name)
        for p, (_, rec) in zip(points, table.iterrows()) for name, row in ((n, rec[n]) for n in axes))
    if not same:
        raise DataError(folder / "sweep.csv", "its settings are not the grid the estimate was made over.",
                        fix="give `hnm estimate` the curate flags you gave `hnm audit` (its report.json has them)")
    sweep = report["sweep"]
    pick, met, why = pick_with_verdicts(table, estimates, target_leak=sweep["target_leak"],
                                        min_coverage=sweep["min_coverage"])
    chosen = {n: None if pd.isna(table.at[pick, n]) else setting(n).check(table.at[pick, n]) for n in axes}
    flags = " ".join(f"{setting(n).flag} {'off' if v is None else v}" for n, v in chosen.items())
    return {"settings": chosen, "flags": flags, "met_target": met, "reason": why}

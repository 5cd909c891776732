"""The mining commands of `hnm`: pool, mine, curate, diff, audit, train-teacher. Each takes the parsed arguments
and returns the exit status; hnm_core.cli.main parses and reports errors."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..curate.overrides import Overrides
from ..data import Collection
from ..models.files import check_lengths
from ..outputs.folder import check_out, finish, refuse_inputs
from ..outputs.marker import Kind
from ..settings import Stage
from ..wording import counted
from .flags import progress_for, say, settings_from_args

# the teacher_train settings serve --train-teacher
AUDIT_STAGES: tuple[Stage, ...] = ("data", "run", "pool", "teacher", "curate", "audit", "teacher_train")

__all__ = ["run_pool", "run_mine", "run_curate", "run_diff", "run_audit", "run_train_teacher"]


def _collection_for(args: argparse.Namespace, values: dict[str, Any], kind: Kind) -> Collection:
    """Before any work, --out checked for an output of `kind` and every model's max length; then the collection,
    its skipped lines said."""
    from ..data import load_collection

    check_out(args.out, kind, overwrite=args.overwrite, inputs=[args.data])
    check_lengths(values, encodes=not (args.doc_embeddings and args.query_embeddings))
    collection = load_collection(args.data, split=values["split"], hf_config=args.hf_config, hf_split=args.hf_split)
    say(collection.problems)
    return collection


def run_pool(args: argparse.Namespace) -> int:
    from ..pool import PoolParams, build_pool, save_pool

    values = settings_from_args(args, ("data", "run", "pool"))
    params = PoolParams.from_settings(values)
    collection = _collection_for(args, values, "pool")
    pool = build_pool(collection, params, cache_dir=args.cache_dir, doc_embeddings=args.doc_embeddings,
                      query_embeddings=args.query_embeddings, progress=progress_for(args))
    folder = save_pool(pool, args.out, overwrite=args.overwrite, inputs=[args.data])
    say(pool.stats.sentences())
    print(f"Pool saved to {folder}")
    return 0


def _engine_session(values: dict[str, Any]) -> Any:
    """One Ray session for the whole command under --engine ray (mining, curation and saving share it)."""
    if values["engine"] == "ray":
        from ..engines.ray_engine import session

        return session()
    return contextlib.nullcontext()


def _curate_and_export(pool: Any, values: dict[str, Any], args: argparse.Namespace, command: str,
                       inputs: Sequence[Path], pending: Sequence[str] = (),
                       overrides: Overrides | None = None) -> Any:
    from ..curate.rules import CurateParams
    from ..export.formats import export

    if values["engine"] == "ray":
        from ..engines.ray_engine import curate
    else:
        from ..curate.rules import curate
    curation = curate(pool.frame, CurateParams.from_settings(values), overrides)
    result = export(pool, curation, args.out, formats=values["formats"], file_type=values["file_type"],
                    extra_positives=values["extra_positives"], overwrite=args.overwrite,
                    extra_manifest={"command": command}, inputs=inputs, pending=pending)
    if overrides:
        print(f"Applied {counted(len(overrides), 'verdict')} of {overrides.path}.")
    say(curation.summary())
    print(f"Exported to {result.out_dir}: {', '.join(p.name for p in result.paths)}")
    return result


def run_mine(args: argparse.Namespace) -> int:
    from ..curate.overrides import default_path, read_overrides
    from ..engines.local import MiningParams, mine
    from ..manifest import atomic_write_bytes

    values = settings_from_args(args, ("data", "run", "engine", "pool", "teacher", "curate", "export"))
    params = MiningParams.from_settings(values)
    collection = _collection_for(args, values, "export")
    # read before mining: a bad line fails in a second, not after the corpus is encoded
    overrides = read_overrides(args.overrides, collection) if args.overrides else None
    with _engine_session(values):
        pool = mine(collection, params, cache_dir=args.cache_dir, doc_embeddings=args.doc_embeddings,
                    query_embeddings=args.query_embeddings, progress=progress_for(args))
        say(pool.stats.sentences())
        # The export is marked incomplete until its pool/ is saved: a run killed in between is replaced by the next.
        result = _curate_and_export(pool, values, args, " ".join(["hnm", *sys.argv[1:]]) if sys.argv else "hnm mine",
                                    inputs=[args.data, *([args.overrides] if args.overrides else [])],
                                    pending=["pool"], overrides=overrides)
        if values["engine"] == "ray":
            from ..engines.ray_engine import save_ray_pool as save_pool
        else:
            from ..pool import save_pool
        folder = save_pool(pool, result.out_dir / "pool")
    if overrides:  # beside the pool, where `hnm curate` and the studio look for them (a review CSV as its verdicts)
        atomic_write_bytes(default_path(folder), overrides.to_jsonl() if args.overrides.suffix.lower() == ".csv"
                           else args.overrides.read_bytes())
    finish(result.out_dir)
    print(f"Scored pool saved to {folder} (re-curate it with `hnm curate {folder} --out DIR`)")
    return 0


def run_curate(args: argparse.Namespace) -> int:
    from ..curate.overrides import default_path, read_overrides
    from ..pool import load_pool

    folder = args.pool_dir / "pool" if (args.pool_dir / "pool" / "manifest.json").exists() else args.pool_dir
    check_out(args.out, "export", overwrite=args.overwrite, inputs=[folder])
    pool = load_pool(folder)
    overrides = read_overrides(args.overrides or default_path(folder), pool.collection,
                               missing_ok=args.overrides is None)
    # The pool's own settings stand in for the defaults, so its seed samples unless --seed (or --config) says else.
    values = settings_from_args(args, ("run", "engine", "curate", "export"), base=pool.meta.get("settings"))
    with _engine_session(values):
        _curate_and_export(pool, values, args, "hnm curate", inputs=[folder], overrides=overrides)
    return 0


def run_diff(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..prove.rounds import diff_rounds

    result = diff_rounds(args.round_a, args.round_b, allow_different_collections=args.allow_different_collections)
    if args.json:
        print(json.dumps(asdict(result), indent=2, default=str))
    else:
        say(result.sentences())
    return 0


def run_audit(args: argparse.Namespace) -> int:
    from ..audit import audit, save_report
    from ..curate.overrides import read_overrides
    from ..data import load_collection

    values = settings_from_args(args, AUDIT_STAGES)
    check_out(args.out, "audit", overwrite=args.overwrite, inputs=[args.data])
    check_lengths(values, trains_teacher=bool(args.train_teacher))
    if args.train_teacher:  # a teacher in the data or in the report folder (replaced whole) would be lost
        refuse_inputs(args.train_teacher, [args.data, args.out])
    collection = load_collection(args.data, split=values["split"], hf_config=args.hf_config,
                                 hf_split=args.hf_split)
    for line in collection.problems:  # stdout is the JSON report under --json
        print(line, file=sys.stderr if args.json else sys.stdout)
    overrides = read_overrides(args.overrides, collection) if args.overrides else None
    report = audit(collection, values, cache_dir=args.cache_dir, train_teacher_dir=args.train_teacher,
                   overrides=overrides, progress=progress_for(args))
    folder = save_report(report, args.out, overwrite=args.overwrite, inputs=[args.data],
                         extra_manifest={"command": " ".join(["hnm", *sys.argv[1:]]) if sys.argv else "hnm audit"})
    if args.json:
        print(report.to_json())
        return 0
    say(report.sentences())
    print()
    print(report.sweep.format_frontier())
    print(f"Report, sweep and split saved to {folder}")
    return 0


def run_train_teacher(args: argparse.Namespace) -> int:
    from ..curate.overrides import read_overrides
    from ..data import load_collection
    from ..teacher.training import train_options, train_teacher

    values = settings_from_args(args, ("data", "run", "pool", "teacher_train"), also=("checkpoint_minutes",))
    refuse_inputs(args.out, [args.data])  # before any work; the folder's own rules are checked by train_teacher
    check_lengths(values, trains_teacher=True)
    collection = load_collection(args.data, split=values["split"], hf_config=args.hf_config,
                                 hf_split=args.hf_split)
    say(collection.problems)
    overrides = read_overrides(args.overrides, collection) if args.overrides else None
    result = train_teacher(collection, args.out, **train_options(values), pool_settings=values,
                           overrides=overrides.entries if overrides else None, cache_dir=args.cache_dir,
                           checkpoint_minutes=values["checkpoint_minutes"], overwrite=args.overwrite,
                           inputs=[args.data, *([args.overrides] if args.overrides else [])],
                           progress=progress_for(args))
    say(result.sentences())
    if overrides is not None:
        taught = result.manifest["verdicts"]
        print(f"Taught {counted(taught['taught'], 'verdict')} of {overrides.path} ({taught['positives']:,} unlabelled "
              f"positives), each only to the folds that never score its query; {taught['untaught']:,} on queries no "
              "fold holds (no labelled positive) left out.")
    print(f"Teacher saved to {result.out_dir} ({counted(result.trained, 'fold')} trained, {result.reused} kept); "
          f"mine with `hnm mine DATA --teacher {values['teacher_kind']} --teacher-model {result.out_dir}`")
    return 0

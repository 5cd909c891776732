"""`hnm`: the command line over the same pipeline as the app.

    hnm pool DATA --out DIR        build the candidate pool (BM25 + dense, with provenance) and save it
    hnm mine DATA --out DIR        pool -> teacher -> curate -> export, headless
    hnm curate POOL_DIR --out DIR  re-curate a saved pool with other settings, nothing recomputed
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
import json
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..data import counted
from ..errors import HnmError, HnmWarning, SettingsError
from ..models.files import check_lengths
from ..export.outdir import check_out, finish, refuse_inputs
from ..export.outlock import claim
from ..curate.overrides import OVERRIDES_FILE, Overrides
from ..prove import STAGES as PROVE_STAGES
from ..settings import SETTINGS, Setting, Stage, from_manifest, validate
from ..storage import check_cache_dir, disk_full, is_disk_full

__all__ = ["main", "build_parser"]


_OFF = {"none", "off", ""}


def _flag_type(spec: Setting) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        if spec.optional and text.strip().lower() in _OFF:
            return None
        try:
            return spec.check(text)
        except SettingsError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = spec.type.__name__
    return convert


def _add_settings(parser: argparse.ArgumentParser, stages: Sequence[Stage], also: Sequence[str] = ()) -> None:
    """One flag per setting of `stages` (and the single settings named in `also`), with its help and default from
    the settings table. Defaults are not set on the parser (SUPPRESS), so `--config` can tell what was given on the
    command line."""
    groups = [(f"{stage} settings", [spec for spec in SETTINGS if spec.stage == stage]) for stage in stages]
    if also:
        groups.append(("other settings", [spec for spec in SETTINGS if spec.name in also]))
    for title, specs in groups:
        group = parser.add_argument_group(title)
        for spec in specs:
            default = ",".join(spec.default) if spec.multiple else spec.default
            help_text = f"{spec.help} (default: {default if default not in (None, '') else 'off' if spec.optional else repr(default)})"
            if spec.optional:
                help_text += " Use 'off' to disable."
            help_text = help_text.replace("%", "%%")  # argparse %-formats help; the table's text is plain
            if spec.type is bool:
                group.add_argument(spec.flag, dest=spec.name, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=help_text)
            else:
                metavar = "{" + ",".join(map(str, spec.choices)) + "}" if spec.choices else spec.type.__name__.upper()
                group.add_argument(spec.flag, dest=spec.name, type=_flag_type(spec), default=argparse.SUPPRESS,
                                   metavar=metavar, help=help_text)


def _common(parser: argparse.ArgumentParser, *, data: bool = True) -> None:
    if data:
        parser.add_argument("data", type=Path, help="a BEIR folder, a pairs file (JSONL/CSV/Parquet), a "
                                                    "FlagEmbedding JSONL file, a Hugging Face save_to_disk folder "
                                                    "(--split picks a DatasetDict's split) or a hub id org/name")
        parser.add_argument("--hf-config", default=None, help="the hub dataset's configuration (DATA a hub id)")
        parser.add_argument("--hf-split", default=None, help="the hub dataset's split, slices such as "
                                                             "'train[:1000]' too (default: --split of all)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier hnm output of the same kind in --out (only the files hnm wrote "
                             "there are removed; a folder hnm did not write is never touched)")
    parser.add_argument("--config", type=Path, help="replay the settings of a manifest.json (flags still win)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="embedding and score cache (default: $HNM_CACHE_DIR or ~/.cache/hnm)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


# the teacher_train settings serve --train-teacher
AUDIT_STAGES: tuple[Stage, ...] = ("data", "run", "pool", "teacher", "curate", "audit", "teacher_train")


def _embedding_files(parser: argparse.ArgumentParser) -> None:
    for side, order in (("doc", "corpus"), ("query", "queries")):
        parser.add_argument(f"--{side}-embeddings", type=Path, default=None, metavar="FILE",
                            help=f"{side} embeddings made elsewhere, used instead of encoding with --model: .npy in "
                                 f"{order} order, or Parquet with an id column and a vector column")


def _overrides_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overrides", type=Path, default=None, metavar="FILE",
                        help=f"a JSONL file of your verdicts on candidates (unlabelled_positive, bad_negative; see "
                             f"hnm_core/curate/overrides.py) to {what}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hnm", description="Hard-negative mining for text-embedding training sets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("pool", help="build and save the candidate pool (BM25 + dense top-K, minus positives)")
    _common(p)
    _add_settings(p, ("data", "run", "pool"))
    _embedding_files(p)
    p.set_defaults(run=_cmd_pool)

    p = sub.add_parser("mine", help="pool -> teacher -> curate -> export, headless")
    _common(p)
    _overrides_flag(p, "apply to the curation; a copy is kept beside the saved pool")
    _add_settings(p, ("data", "run", "engine", "pool", "teacher", "curate", "export"))
    _embedding_files(p)
    p.set_defaults(run=_cmd_mine)

    p = sub.add_parser("curate", help="re-curate a saved pool (from `hnm pool` or `hnm mine`) without recomputing")
    p.add_argument("pool_dir", type=Path, help="a pool folder, or the output folder of `hnm mine`")
    _common(p, data=False)
    _overrides_flag(p, f"apply to the curation (default: POOL_DIR/{OVERRIDES_FILE} when it exists)")
    _add_settings(p, ("run", "engine", "curate", "export"))
    p.set_defaults(run=_cmd_curate)

    p = sub.add_parser("diff", help="compare two mining rounds (export folders)")
    p.add_argument("round_a", type=Path)
    p.add_argument("round_b", type=Path)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--allow-different-collections", action="store_true",
                   help="compare rounds whose manifests name different collections (refused by default)")
    p.set_defaults(run=_cmd_diff)

    p = sub.add_parser("audit", help="hide some labelled positives, mine, and measure how many come back as "
                                     "negatives, over a sweep of the false-negative settings")
    _common(p)
    _overrides_flag(p, "count its unlabelled positives as known false negatives and say how many the rules catch")
    _add_settings(p, AUDIT_STAGES)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--train-teacher", type=Path, metavar="TEACHER_DIR",
                   help="train the teacher (hnm train-teacher, with its flags) on the visible "
                        "positives only, into this folder (resumable), and audit with it")
    p.set_defaults(run=_cmd_audit)

    p = sub.add_parser("train-teacher", help="train a teacher (a cross-encoder, or a fine-tuned bi-encoder with "
                                             "--teacher-kind bi-encoder) on the labelled positives, cross-fitted "
                                             "over queries; mine with it through --teacher <kind> --teacher-model OUT")
    _common(p)
    # the pool settings choose the retrieval the teacher's negatives come from
    _add_settings(p, ("data", "run", "pool", "teacher_train"))
    p.set_defaults(run=_cmd_train_teacher)
    _add_train_eval(sub)

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


def _add_train_eval(sub: Any) -> None:
    p = sub.add_parser("train", help="fine-tune a bi-encoder on an export (MNRL on ntuple, MarginMSE on "
                                     "ntuple_scores), with the proof protocol's recipe")
    p.add_argument("export_dir", type=Path, help="an export folder (or one ntuple / ntuple_scores file)")
    p.add_argument("--out", type=Path, required=True, help="the model folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_settings(p, ("run", "train"))
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("eval", help="nDCG@10, Recall@100 and MRR@10 of a bi-encoder on a BEIR split, as "
                                    "sentence-transformers' InformationRetrievalEvaluator computes them")
    p.add_argument("model", help="a sentence-transformers name or model folder (e.g. the output of `hnm train`)")
    p.add_argument("data", type=Path, help="a BEIR folder (or a pairs / FlagEmbedding file)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="embedding cache (default: $HNM_CACHE_DIR or ~/.cache/hnm)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_settings(p, ("data", "eval"), also=("batch_size",))
    p.set_defaults(run=_cmd_eval)

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
    _add_settings(p, PROVE_STAGES)
    p.set_defaults(run=_cmd_prove)


def _settings(args: argparse.Namespace, stages: Sequence[Stage],
              base: dict[str, Any] | None = None, also: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults <- `base` (the settings a saved pool was mined with) <- --config manifest <- flags given on the
    command line; for the settings of `stages` and those named in `also`."""
    names = {s.name for s in SETTINGS if s.stage in stages} | set(also)
    values: dict[str, Any] = {k: v for k, v in (base or {}).items() if k in names}
    if getattr(args, "config", None):
        try:
            raw = args.config.read_bytes()
        except OSError as error:
            raise SettingsError(f"{args.config}: cannot read the config ({error.strerror}). Fix: pass a "
                                "manifest.json written by hnm") from None
        values.update({k: v for k, v in from_manifest(raw, source=str(args.config)).items() if k in names})
    values.update({k: v for k, v in vars(args).items() if k in names})
    return {k: v for k, v in validate(values).items() if k in names}


def _progress(args: argparse.Namespace):
    from ..progress import no_progress, terminal_progress

    return no_progress if args.quiet else terminal_progress()


def _say(lines: Sequence[str]) -> None:
    for line in lines:
        print(line)


def _cmd_pool(args: argparse.Namespace) -> int:
    from ..data import load_collection
    from ..pool.build import PoolParams, build_pool, save_pool

    values = _settings(args, ("data", "run", "pool"))
    params = PoolParams.from_settings(values)
    check_out(args.out, "pool", overwrite=args.overwrite, inputs=[args.data])
    check_lengths(values, encodes=not (args.doc_embeddings and args.query_embeddings))
    collection = load_collection(args.data, split=values["split"], hf_config=args.hf_config,
                                 hf_split=args.hf_split)
    _say(collection.problems)
    pool = build_pool(collection, params, cache_dir=args.cache_dir, doc_embeddings=args.doc_embeddings,
                      query_embeddings=args.query_embeddings, progress=_progress(args))
    folder = save_pool(pool, args.out, overwrite=args.overwrite, inputs=[args.data])
    _say(pool.stats.sentences())
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
    _say(curation.summary())
    print(f"Exported to {result.out_dir}: {', '.join(p.name for p in result.paths)}")
    return result


def _cmd_mine(args: argparse.Namespace) -> int:
    from ..data import load_collection
    from ..manifest import atomic_write_bytes
    from ..curate.overrides import default_path, read_overrides
    from ..engines.local import MiningParams, mine

    values = _settings(args, ("data", "run", "engine", "pool", "teacher", "curate", "export"))
    params = MiningParams.from_settings(values)
    check_out(args.out, "export", overwrite=args.overwrite, inputs=[args.data])
    check_lengths(values, encodes=not (args.doc_embeddings and args.query_embeddings))
    collection = load_collection(args.data, split=values["split"], hf_config=args.hf_config,
                                 hf_split=args.hf_split)
    _say(collection.problems)
    # read before mining: a bad line fails in a second, not after the corpus is encoded
    overrides = read_overrides(args.overrides, collection) if args.overrides else None
    with _engine_session(values):
        pool = mine(collection, params, cache_dir=args.cache_dir, doc_embeddings=args.doc_embeddings,
                    query_embeddings=args.query_embeddings, progress=_progress(args))
        _say(pool.stats.sentences())
        # The export is marked incomplete until its pool/ is saved: a run killed in between is replaced by the next.
        result = _curate_and_export(pool, values, args, " ".join(["hnm", *sys.argv[1:]]) if sys.argv else "hnm mine",
                                    inputs=[args.data, *([args.overrides] if args.overrides else [])],
                                    pending=["pool"], overrides=overrides)
        if values["engine"] == "ray":
            from ..engines.ray_engine import save_ray_pool as save_pool
        else:
            from ..pool.build import save_pool
        folder = save_pool(pool, result.out_dir / "pool")
    if overrides:  # beside the pool, where `hnm curate` and the studio look for them
        atomic_write_bytes(default_path(folder), args.overrides.read_bytes())
    finish(result.out_dir)
    print(f"Scored pool saved to {folder} (re-curate it with `hnm curate {folder} --out DIR`)")
    return 0


def _cmd_curate(args: argparse.Namespace) -> int:
    from ..curate.overrides import default_path, read_overrides
    from ..pool.build import load_pool

    folder = args.pool_dir / "pool" if (args.pool_dir / "pool" / "manifest.json").exists() else args.pool_dir
    check_out(args.out, "export", overwrite=args.overwrite, inputs=[folder])
    pool = load_pool(folder)
    overrides = read_overrides(args.overrides or default_path(folder), pool.collection,
                               missing_ok=args.overrides is None)
    # The pool's own settings stand in for the defaults, so its seed samples unless --seed (or --config) says else.
    values = _settings(args, ("run", "engine", "curate", "export"), base=pool.meta.get("settings"))
    with _engine_session(values):
        _curate_and_export(pool, values, args, "hnm curate", inputs=[folder], overrides=overrides)
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..prove.rounds import diff_rounds

    result = diff_rounds(args.round_a, args.round_b, allow_different_collections=args.allow_different_collections)
    if args.json:
        print(json.dumps(asdict(result), indent=2, default=str))
    else:
        _say(result.sentences())
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from ..audit.report import audit, save_report
    from ..data import load_collection
    from ..curate.overrides import read_overrides

    values = _settings(args, AUDIT_STAGES)
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
                   overrides=overrides, progress=_progress(args))
    folder = save_report(report, args.out, overwrite=args.overwrite, inputs=[args.data],
                         extra_manifest={"command": " ".join(["hnm", *sys.argv[1:]]) if sys.argv else "hnm audit"})
    if args.json:
        print(report.to_json())
        return 0
    _say(report.sentences())
    print()
    print(report.sweep.format_frontier())
    print(f"Report, sweep and split saved to {folder}")
    return 0


def _cmd_train_teacher(args: argparse.Namespace) -> int:
    from ..data import load_collection
    from ..teacher.training import train_options, train_teacher

    values = _settings(args, ("data", "run", "pool", "teacher_train"))
    refuse_inputs(args.out, [args.data])  # before any work; the folder's own rules are checked by train_teacher
    check_lengths(values, trains_teacher=True)
    collection = load_collection(args.data, split=values["split"], hf_config=args.hf_config,
                                 hf_split=args.hf_split)
    _say(collection.problems)
    result = train_teacher(collection, args.out, **train_options(values), pool_settings=values,
                           cache_dir=args.cache_dir, overwrite=args.overwrite, inputs=[args.data],
                           progress=_progress(args))
    _say(result.sentences())
    print(f"Teacher saved to {result.out_dir} ({counted(result.trained, 'fold')} trained, {result.reused} kept); "
          f"mine with `hnm mine DATA --teacher {values['teacher_kind']} --teacher-model {result.out_dir}`")
    return 0


def _one_line_warning(command: str, default: Callable[..., None]) -> Callable[..., None]:
    """hnm's own warnings (a damaged cache file being recomputed...) as one line on stderr, like its errors."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, HnmWarning):
            print(f"hnm {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _cmd_train(args: argparse.Namespace) -> int:
    from ..prove.train import train_model

    values = _settings(args, ("run", "train"))
    result = train_model(args.export_dir, args.out, model=values["train_model"], loss=values["loss"],
                         epochs=values["epochs"], batch_size=values["train_batch_size"], lr=values["lr"],
                         warmup_ratio=values["warmup_ratio"], seed=values["seed"], max_pairs=values["max_pairs"],
                         precision=values["train_precision"], overwrite=args.overwrite,
                         extra_manifest={"command": " ".join(["hnm", *sys.argv[1:]]) if sys.argv else "hnm train"},
                         progress=_progress(args))
    print(f"Trained {counted(result.steps, 'step')} on {counted(result.rows, 'row')} in {result.seconds:,.0f} s "
          f"(mean loss {result.training_loss:.4f}); model saved to {result.out_dir}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..prove.evaluate import evaluate, load_eval_collection

    values = _settings(args, ("data", "eval"), also=("batch_size",))
    collection = load_eval_collection(args.data, split=values["split"])
    for line in collection.problems:  # stdout is the JSON under --json
        print(line, file=sys.stderr if args.json else sys.stdout)
    result = evaluate(args.model, collection, precision=values["eval_precision"], batch_size=values["batch_size"],
                      cache_dir=args.cache_dir, progress=_progress(args))
    print(result.to_json() if args.json else result.table())
    return 0


def _cmd_prove(args: argparse.Namespace) -> int:
    from ..prove import VARIANT_STAGES, prove
    from ..prove.variants import parse_variant

    variants = dict(parse_variant(text, VARIANT_STAGES) for text in args.variant)
    if len(variants) < len(args.variant):
        raise SettingsError("--variant: two variants have one name. Fix: give each its own")
    result = prove(args.data, args.out, _settings(args, PROVE_STAGES), variants=variants, cache_dir=args.cache_dir,
                   progress=_progress(args))
    print(result.table())
    for seed, diff in result.rounds.items():
        print(f"Round 2 (seed {seed}): {diff['overlap']:,} of {counted(diff['a_selected'], 'round-1 negative')} kept, "
              f"{diff['new_in_b']:,} new, Jaccard {diff['jaccard']:.3f}")
    print(f"{counted(result.trained, 'arm run')} trained, {len(result.runs) - result.trained} reused or untrained; "
          f"prove.json saved to {result.out_dir}")
    return 0


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
            warnings.showwarning = _one_line_warning(args.command, warnings.showwarning)
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
        print(f"hnm {args.command}: interrupted; finished chunks are cached and the next run resumes",
              file=sys.stderr)
        return 130



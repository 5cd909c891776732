"""The `hnm` flags: every setting of settings.py as a flag, the flags most commands share, and the settings a
command line gives (defaults <- a saved pool's <- --config <- flags)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from ..settings import SETTINGS, Setting, Stage, from_manifest, validate

__all__ = ["add_settings", "common_flags", "embedding_file_flags", "overrides_flag", "settings_from_args"]


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


def add_settings(parser: argparse.ArgumentParser, stages: Sequence[Stage], also: Sequence[str] = ()) -> None:
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


def common_flags(parser: argparse.ArgumentParser, *, data: bool = True) -> None:
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


def embedding_file_flags(parser: argparse.ArgumentParser) -> None:
    for side, order in (("doc", "corpus"), ("query", "queries")):
        parser.add_argument(f"--{side}-embeddings", type=Path, default=None, metavar="FILE",
                            help=f"{side} embeddings made elsewhere, used instead of encoding with --model: .npy in "
                                 f"{order} order, or Parquet with an id column and a vector column")


def overrides_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overrides", type=Path, default=None, metavar="FILE",
                        help=f"a JSONL file of your verdicts on candidates (unlabelled_positive, bad_negative, "
                             f"confirmed_negative; see hnm_core/curate/overrides.py), or a filled `hnm review` CSV, "
                             f"to {what}")


def settings_from_args(args: argparse.Namespace, stages: Sequence[Stage],
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


def progress_for(args: argparse.Namespace):
    from ..progress import no_progress, terminal_progress

    if args.quiet:
        # The libraries' own bars too (loading and saving weights, the trainer's model card): tqdm reads this when
        # it is first imported, which in a command is after its flags are read.
        os.environ.setdefault("TQDM_DISABLE", "1")
        return no_progress
    return terminal_progress()


def say(lines: Sequence[str]) -> None:
    for line in lines:
        print(line)

"""Hugging Face `datasets` in: a `datasets.Dataset` in memory, a folder written by `Dataset.save_to_disk` or
`DatasetDict.save_to_disk` (a split picked by name), or a hub id `org/name` read with `datasets.load_dataset`.

The rows are read as a pairs file's (query and positive columns auto-detected, negative columns as given
negatives, a `label` column as labelled pairs; hnm_core.data.pairs) or, with a list column `pos`, as FlagEmbedding
records; texts get the same ids and the same checks.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..wording import counted, one_line
from .collection import Collection
from .flag import flag_from_records
from .pairs import PairRow, PairsBuilder, build_pairs, pick_columns

__all__ = ["require_datasets", "is_hf_folder", "hf_splits", "looks_like_hub_id", "load_hf_folder", "load_hub",
           "collection_from_dataset", "pairs_collection"]

INSTALL = "pip install 'datasets>=2.19'"
# save_to_disk writes dataset_dict.json for a DatasetDict, state.json + dataset_info.json for a Dataset.
_DICT_FILE, _STATE_FILE = "dataset_dict.json", "state.json"
# org/name as the hub spells it: one slash, letters, digits, '-', '_', '.'; not a path a person typed.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_ROWS = 10_000  # rows read from a Dataset at a time


def require_datasets() -> Any:
    """The `datasets` module; ImportError with the install line when it is missing."""
    try:
        import datasets
    except ImportError:
        raise ImportError(f"reading and writing Hugging Face datasets needs the datasets package. Fix: {INSTALL}") \
            from None
    return datasets


def is_hf_folder(path: Path) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return path.is_dir() and ((path / _DICT_FILE).is_file() or (path / _STATE_FILE).is_file())


def hf_splits(path: Path) -> list[str]:
    """The splits of a folder written by `DatasetDict.save_to_disk` ([] for a Dataset's or any other folder)."""
    import json

    try:
        splits = json.loads((path / _DICT_FILE).read_text(encoding="utf-8")).get("splits", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(split) for split in splits] if isinstance(splits, list) else []


def looks_like_hub_id(text: str) -> bool:
    """Whether `text` (not an existing path) reads as a hub id `org/name` rather than a mistyped file path."""
    return bool(_HUB_ID.fullmatch(text)) and Path(text).suffix.lower() not in (".jsonl", ".json", ".csv", ".tsv",
                                                                                ".parquet")


def load_hf_folder(path: str | Path, *, split: str) -> Collection:
    """A `save_to_disk` folder: a Dataset, or the split `split` of a DatasetDict (its only split when it has one
    and `split` is not among them)."""
    datasets = require_datasets()
    path = Path(path)
    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise DataError(path, f"cannot be read as a saved Hugging Face dataset ({one_line(error)})",
                        fix="write it again with Dataset.save_to_disk / DatasetDict.save_to_disk") from None
    dataset, note = _pick_split(loaded, split, str(path), "--split")
    return _with_problem(pairs_collection(dataset, path, f"Hugging Face dataset folder {path.resolve()}"), note)


def load_hub(dataset_id: str, *, split: str, config: str | None = None, hf_split: str | None = None) -> Collection:
    """A dataset of the Hugging Face hub (or its local cache) by id: `config` names its configuration, `hf_split`
    the split (slices such as 'train[:1000]' work); without `hf_split`, the split `split` of what it holds."""
    datasets = require_datasets()
    _reachable(dataset_id)
    try:
        loaded = datasets.load_dataset(dataset_id, config, split=hf_split)
    except ImportError:
        raise
    except Exception as error:  # the hub client's errors come in many types; all mean "cannot load it"
        raise DataError(dataset_id, f"cannot be loaded from the Hugging Face hub ({one_line(error)[:300]})",
                        fix="check the id (and --hf-config / --hf-split), or the path if it is a local one; "
                            "offline, save it with save_to_disk elsewhere and pass the folder") from None
    dataset, note = _pick_split(loaded, split, dataset_id, "--hf-split")
    source = f"Hugging Face hub dataset {dataset_id}" + (f" ({config})" if config else "")
    return _with_problem(pairs_collection(dataset, Path(dataset_id), source), note)


def _reachable(dataset_id: str) -> None:
    """Fail in seconds when the hub cannot be reached (its client retries for about half a minute), unless the
    Hugging Face offline switch says to read the local cache only."""
    if any(os.environ.get(var, "0").lower() not in ("0", "", "false") for var in ("HF_HUB_OFFLINE",
                                                                                     "HF_DATASETS_OFFLINE")):
        return
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=3).close()
    except OSError as error:
        raise DataError(dataset_id, f"cannot be loaded: the Hugging Face hub ({endpoint.hostname}) cannot be "
                        f"reached ({error.strerror or error})",
                        fix="check the id and the network; set HF_HUB_OFFLINE=1 to read the local Hugging Face "
                            "cache, or save it with save_to_disk where the hub is reachable and pass the folder") \
            from None


def _pick_split(loaded: Any, split: str, name: str, flag: str) -> tuple[Any, str | None]:
    """The Dataset of `loaded` (a Dataset, or a DatasetDict's split `split`) and a note when another was read."""
    if not hasattr(loaded, "keys"):
        return loaded, None
    splits = list(loaded.keys())
    if split in splits:
        return loaded[split], None
    if len(splits) == 1:
        return loaded[splits[0]], f"{name}: no split {split!r}; read its only split {splits[0]!r}."
    raise DataError(name, f"has no split {split!r}; its splits are {', '.join(splits)}",
                    fix=f"pick one with {flag} ({splits[0]}, say)")


def _with_problem(collection: Collection, note: str | None) -> Collection:
    return dataclasses.replace(collection, problems=(note, *collection.problems)) if note else collection


def _batches(dataset: Any, names: Sequence[str]) -> Iterator[tuple[int, dict[str, list[Any]]]]:
    """(first row number, {column: values}) over `dataset`, `_ROWS` rows at a time."""
    columns = dataset.select_columns(list(names))
    for start in range(0, len(columns), _ROWS):
        yield start, columns[start:start + _ROWS]


def pairs_collection(dataset: Any, path: Path, source: str) -> Collection:
    """A Dataset read as a pairs file (or FlagEmbedding records with a list column `pos`), located as `path`."""
    if len(dataset) == 0:
        raise DataError(path, "has no rows", fix="give a dataset with at least one (query, positive) row")
    features = dict(dataset.features)
    pos = features.get("pos")
    if pos is not None and type(pos).__name__ in ("Sequence", "List", "LargeList"):
        names = [name for name in features if name in ("query", "pos", "neg")]

        def records() -> Iterator[tuple[str, dict[str, Any]]]:
            for start, batch in _batches(dataset, names):
                for i in range(len(batch["pos"])):
                    yield f"row {start + i + 1}", {name: batch[name][i] for name in names}

        collection = flag_from_records(path, records())
    else:
        columns = pick_columns(path, list(features), None, None)
        names = [columns.query, columns.positive, *columns.negatives, *([columns.label] if columns.label else [])]

        def rows() -> Iterator[PairRow]:
            for start, batch in _batches(dataset, names):
                for i in range(len(batch[columns.query])):
                    yield PairRow(f"row {start + i + 1}", batch[columns.query][i], batch[columns.positive][i],
                               tuple(batch[name][i] for name in columns.negatives),
                               batch[columns.label][i] if columns.label else None)

        collection = build_pairs(path, (columns, rows()))
    return dataclasses.replace(collection, source=source)


def collection_from_dataset(dataset: Any, anchor_column: str, positive_column: str, *,
                            corpus: Iterable[str] | None = None, name: str = "dataset") -> Collection:
    """The (anchor, positive) pairs of a Dataset as a Collection, as sentence-transformers' mine_hard_negatives
    reads them: a repeated anchor collects several positives, other columns are not read, and the documents are
    `corpus` (empty texts skipped and counted) followed by the positives."""
    where = Path(name)
    builder = PairsBuilder(where)
    empty = 0
    for i, text in enumerate(corpus if corpus is not None else ()):
        if isinstance(text, str) and not text.strip():
            empty += 1
            continue
        builder._doc(builder._text(f"corpus item {i + 1}", text, "corpus", "document"))
    for start, batch in _batches(dataset, [anchor_column, positive_column]):
        for i, (query, positive) in enumerate(zip(batch[anchor_column], batch[positive_column])):
            row = f"row {start + i + 1}"
            builder.positive(row, builder.query(row, query, anchor_column), positive, positive_column)
    collection = builder.collection("Dataset")
    note = f"corpus: {counted(empty, 'empty text')} skipped." if empty else None
    return _with_problem(dataclasses.replace(collection, name=name, source=f"datasets.Dataset {name}"), note)


"""Stage 1, data: read a retrieval collection into one in-memory model.

Readers: a BEIR folder, a pairs file (JSONL / JSON / CSV / TSV / Parquet with query + positive columns),
FlagEmbedding JSONL. All produce a `Collection`. Files are streamed line by line (or in Parquet batches), so a corpus
of a million documents costs its texts in memory and one pass over the file. Bad input raises `DataError` naming the
file, the line (or record / row where a format has no lines) and the fix; recoverable oddities (empty documents,
qrels naming unknown ids, repeated rows) are skipped and counted in `Collection.problems`.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path

from ..settings import setting
from .beir import beir_splits, load_beir
from .collection import Collection, normalize_text, text_id
from .flag import flag_from_records, load_flag
from .hf import is_hf_folder, load_hf_folder, load_hub, looks_like_hub_id
from .pairs import POSITIVE_COLUMNS, QUERY_COLUMNS, load_pairs, pairs_from_json
from .reading import FILE_SUFFIXES, check_file, json_records

__all__ = [
    "Collection",
    "normalize_text",
    "text_id",
    "load_collection",
    "load_beir",
    "load_pairs",
    "load_flag",
    "beir_splits",
    "QUERY_COLUMNS",
    "POSITIVE_COLUMNS",
    "FILE_SUFFIXES",
]


def load_collection(path: str | Path, *, split: str = setting("split").default, hf_config: str | None = None,
                    hf_split: str | None = None) -> Collection:
    """Read a BEIR folder, a pairs file, a FlagEmbedding JSONL file or a Hugging Face dataset, chosen by what `path`
    is.

    split: the BEIR qrels split, or the split of a DatasetDict, to read (ignored for files, which have no splits).
    A folder written by `save_to_disk` is read with `datasets` (hnm_core.data.hf), any other folder as BEIR; a
    .jsonl/.json file whose first record has a "pos" key (or a "neg" key and no positive column) as FlagEmbedding;
    any other .jsonl/.json/.csv/.tsv/.parquet file as pairs with auto-detected columns. A `path` that does not
    exist and reads as `org/name` (or comes with `hf_config` / `hf_split`: the hub's configuration and split,
    slices such as 'train[:1000]' included) is a hub id, loaded with `datasets.load_dataset`.
    """
    path = Path(path)
    if is_hf_folder(path):
        return load_hf_folder(path, split=split)
    if path.is_dir():
        return load_beir(path, split=split)
    if not path.exists() and (hf_config or hf_split or looks_like_hub_id(str(path))):
        return load_hub(str(path), split=split, config=hf_config, hf_split=hf_split)
    suffix = check_file(path)
    if suffix in (".jsonl", ".json"):
        records = json_records(path, example='{"query": "...", "positive": "..."}')
        first = next(records)  # json_records raises on an empty file, so there is a first record
        records = chain([first], records)
        # "neg" without a pairs positive column is FlagEmbedding missing its "pos": its reader names the line.
        keys = {key.strip().lower() for key in first[1]}
        if "pos" in first[1] or ("neg" in first[1] and not keys & set(POSITIVE_COLUMNS)):
            return flag_from_records(path, records)
        return pairs_from_json(path, records, None, None)
    return load_pairs(path)

"""The training files a proof's arms train on: the labelled pairs, sentence-transformers' naive mining of them, and
hnm's export (one per variant, every variant with the base's mining settings curated from one mined pool)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..data import Collection
from ..manifest import atomic_write_bytes, digest, to_json
from ..outputs.folder import write_output
from ..progress import Progress

__all__ = ["write_folder", "pairs_table", "naive_file", "HnmFiles"]


def write_folder(folder: Path, name: str, table: pa.Table, manifest: dict[str, Any]) -> Path:
    """One training file plus its manifest.json as an hnm output folder (replaced when it is written again)."""
    with write_output(folder, "export", overwrite=True) as tmp:
        pq.write_table(table, tmp / name)
        atomic_write_bytes(tmp / "manifest.json", to_json(manifest))
    return folder / name


def pairs_table(collection: Collection) -> pa.Table:
    """(query text, positive text) per labelled pair of the training split, in the collection's order."""
    anchors, positives = [], []
    for qid, text in zip(collection.query_ids, collection.query_texts):
        for doc in collection.positives.get(qid, ()):
            anchors.append(text)
            positives.append(collection.doc_texts[collection.doc_index[doc]])
    return pa.table({"anchor": anchors, "positive": positives})


def naive_file(collection: Collection, pairs: Path, base: Any, negatives: int, batch_size: int, folder: Path) -> Path:
    """sentence-transformers' mine_hard_negatives on the pairs file, exactly as the protocol's st_mined arm (top-k,
    n-tuple, every labelled positive of the query excluded, no other rule); cached in `folder` by the pairs, the base
    model and `negatives`."""
    from .train import file_digest

    key = digest({"pairs": file_digest(pairs), "base": base.fingerprint, "negatives": negatives}, size=8)
    path = folder / "ntuple.parquet"
    manifest = folder / "manifest.json"
    if path.is_file() and manifest.is_file() and json.loads(manifest.read_text()).get("key") == key:
        return path
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    mined = mine_hard_negatives(Dataset.from_dict(pq.read_table(pairs).to_pydict()), base.model,
                                corpus=list(collection.doc_texts), num_negatives=negatives, sampling_strategy="top",
                                output_format="n-tuple", batch_size=batch_size, verbose=False)
    return write_folder(folder, "ntuple.parquet", pa.Table.from_pydict(mined.to_dict()),
                        {"key": key, "method": "sentence_transformers.util.mine_hard_negatives",
                         "num_negatives": negatives, "sampling_strategy": "top", "base_model": base.fingerprint})


class HnmFiles:
    """hnm's exports of one training split: mine -> curate -> export as `hnm mine` does (ntuple, plus the labelled
    pool for diff). Settings that differ only in the curation share one mined pool."""

    def __init__(self, collection: Collection, cache_dir: Any, progress: Progress) -> None:
        self.collection = collection
        self.cache_dir = cache_dir
        self.progress = progress
        self._pools: dict[Any, Any] = {}

    def export(self, values: Mapping[str, Any], folder: Path) -> Path:
        from ..curate.rules import CurateParams, curate
        from ..engines.local import MiningParams, mine
        from ..export.formats import export

        params = MiningParams.from_settings(values)
        if params not in self._pools:
            self._pools[params] = mine(self.collection, params, cache_dir=self.cache_dir, progress=self.progress)
        pool = self._pools[params]
        export(pool, curate(pool.frame, CurateParams.from_settings(values)), folder, formats=("ntuple", "pool"),
               file_type="parquet", overwrite=True, extra_manifest={"command": "hnm prove"})
        return folder / "ntuple.parquet"

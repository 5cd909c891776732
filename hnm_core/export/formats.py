"""Stage 7, export: write a curation as training files, with a manifest, into a folder that appears all at once.

Formats: the names of the `formats` setting, each described once in `FORMATS` (the studio's Export page lists
them from there). `labeled_pair` has the columns of sentence-transformers'
mine_hard_negatives(output_format="labeled-pair"); `flag` also carries query_id, pos_ids and neg_ids. The `pool`
format holds ids only: texts repeated on every row made it 25x the saved pool, so join them by id from the
collection (or pool/corpus.parquet and pool/queries.parquet of `hnm mine`) where needed.

The sentence-transformers formats are Parquet or JSONL (`file_type`), each loadable with
`datasets.load_dataset("parquet" | "json", data_files=...)`. hnm_core.prove.rounds compares two exports' labelled pools.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..curate.reasons import reasons
from ..curate.rules import Curation
from ..errors import ExportError
from ..manifest import fingerprints, package_versions, write_json
from ..outputs.folder import write_output
from ..pool import Pool
from ..schema import LABELLED_COLUMNS
from ..settings import defaults, setting

__all__ = ["FORMATS", "export", "export_tables", "ExportResult", "FILE_NAMES"]

FORMATS: dict[str, str] = {
    "triplet": "anchor, positive, negative: one row per (query, positive, selected negative)",
    "ntuple": "anchor, positive, negative_1..n: queries with the full quota only (the rest are counted)",
    "ntuple_scores": "ntuple plus `label` = the teacher scores [pos, neg_1..neg_n] (MarginMSELoss, distillation)",
    "labeled_pair": "anchor, positive, label (1 positive, 0 negative)",
    "flag": "FlagEmbedding JSONL: query, pos, neg, pos_scores, neg_scores",
    "pool": "the whole labelled pool, every score, label and reason (Parquet, ids only; `hnm diff` compares two)",
    "hf": "the other formats as one Hugging Face dataset folder: `datasets.load_from_disk(folder)['ntuple']`",
}
"""Each export format (the `formats` setting's choices) in one line."""

FILE_NAMES: dict[str, str] = {
    "triplet": "triplet",
    "ntuple": "ntuple",
    "ntuple_scores": "ntuple_scores",
    "labeled_pair": "labeled_pair",
    "flag": "flag.jsonl",
    "pool": "pool.parquet",
    "hf": "hf",
}
"""Format -> file name in the export folder (the first four get `.parquet` or `.jsonl` from `file_type`; hf is a
folder: a DatasetDict of the other formats, written with save_to_disk)."""

_SCORES = pa.list_(pa.float32())


@dataclass(frozen=True)
class ExportResult:
    """Where the export went: the folder, the files in it (manifest last) and the manifest as written."""

    out_dir: Path
    paths: tuple[Path, ...]
    manifest: dict[str, Any]


def export(
    pool: Pool,
    curation: Curation,
    out_dir: str | Path,
    *,
    formats: Iterable[str] | str = defaults("export")["formats"],
    file_type: str = defaults("export")["file_type"],
    extra_positives: bool = defaults("export")["extra_positives"],
    overwrite: bool = False,
    extra_manifest: dict[str, Any] | None = None,
    inputs: Iterable[str | Path] = (),
    pending: Iterable[str] = (),
) -> ExportResult:
    """Write `curation` of `pool` into `out_dir` in each of `formats`, plus manifest.json.

    formats: names from the `formats` setting, a list or a comma-separated string.
    file_type: "parquet" or "jsonl" for triplet / ntuple / ntuple_scores / labeled_pair (flag is always JSONL,
        pool always Parquet).
    extra_positives: also export the candidates a person marked as unlabelled positives (`curation.overrides`) as
        positives of their query; they are never exported as negatives either way.
    overwrite: replace an earlier hnm export at `out_dir` (only the files hnm wrote there are removed); without it
        such a folder is refused. A non-empty folder hnm did not write is always refused (see hnm_core.outputs.folder).
    extra_manifest: more top-level manifest keys (the CLI adds its command line); plain JSON values only.
    inputs: paths the run read (data, pool folder): `out_dir` may not be, contain or lie inside one of them.
    pending: names the caller adds to `out_dir` afterwards (`hnm mine` adds pool/); until `outdir.finish(out_dir)`
        the export is marked incomplete, and the next export there replaces it without `overwrite`.

    Everything is written into a temporary folder beside `out_dir` and renamed into place, so a failure (or a kill)
    leaves either the old folder or nothing, never half an export.
    """
    formats = setting("formats").check(formats)
    file_type = setting("file_type").check(file_type)
    extra_positives = setting("extra_positives").check(extra_positives)
    if len(curation.labels) != len(pool.frame):
        raise ExportError(f"the curation has {len(curation.labels):,} rows but the pool {len(pool.frame):,}. "
                          "Fix: run curate on this pool's frame before exporting")
    if formats == ("hf",):
        raise ExportError("the hf format holds the other asked formats as datasets, and none was asked. Fix: add "
                          "one, e.g. --formats ntuple,hf")
    files: dict[str, dict[str, Any]] = {}
    with write_output(out_dir, "export", overwrite=overwrite, inputs=inputs, pending=pending) as tmp:
        rows = _Rows(pool, curation, extra_positives)
        tables: dict[str, pa.Table] = {}
        for fmt in (f for f in formats if f != "hf"):
            name = FILE_NAMES[fmt]
            if fmt in ("triplet", "ntuple", "ntuple_scores", "labeled_pair"):
                name += ".jsonl" if file_type == "jsonl" else ".parquet"
            tables[fmt], notes = getattr(rows, fmt)()
            _write(tables[fmt], tmp / name)
            files[name] = {"format": fmt, "rows": tables[fmt].num_rows, **notes}
        if "hf" in formats:
            _write_hf(tables, tmp / FILE_NAMES["hf"])
            files[FILE_NAMES["hf"]] = {"format": "hf", "datasets": {fmt: t.num_rows for fmt, t in tables.items()}}
        manifest = _manifest(pool, curation, formats, file_type, files, extra_manifest, extra_positives, rows.n_extra)
        write_json(tmp / "manifest.json", manifest)
    out = Path(out_dir).expanduser()
    paths = tuple(out / name for name in files) + (out / "manifest.json",)
    return ExportResult(out, paths, manifest)


def export_tables(pool: Pool, curation: Curation, formats: Iterable[str] | str, *,
                  extra_positives: bool = defaults("export")["extra_positives"],
                  scores: bool = False) -> dict[str, pa.Table]:
    """The tables `export` writes, in memory, by format (triplet, ntuple, ntuple_scores, labeled_pair, flag, pool).
    `scores`: the triplet and labeled_pair tables carry the teacher's scores (see `_Rows.triplet`)."""
    rows = _Rows(pool, curation, extra_positives)
    return {fmt: (getattr(rows, fmt)(scores) if fmt in ("triplet", "labeled_pair") else getattr(rows, fmt)())[0]
            for fmt in setting("formats").check(formats) if fmt != "hf"}


class _Rows:
    """The pieces every format is cut from: positives and selected negatives grouped by query, with texts."""

    def __init__(self, pool: Pool, curation: Curation, extra_positives: bool):
        frame = pool.frame
        self.frame = frame
        self.curation = curation
        self.quota = curation.params.negatives
        self.codes, uniques = pd.factorize(frame["query_id"])
        self.n_q = len(uniques)
        self.query_ids = np.asarray(uniques, dtype=object)
        self.doc_ids = frame["doc_id"].to_numpy(dtype=object)
        self.scores = frame["teacher_score"].to_numpy(dtype=np.float32, na_value=np.nan)
        coll = pool.collection
        self.collection = coll
        self.query_texts = np.asarray(_lookup(self.query_ids, coll.query_index, coll.query_texts, "query",
                                              coll.name), dtype=object)
        pos = np.flatnonzero(frame["is_positive"].to_numpy(dtype=bool))
        extra = (np.flatnonzero(np.asarray(curation.labels == "unlabelled_positive")) if extra_positives
                 else np.empty(0, np.int64))
        self.n_extra = len(extra)
        pos = np.concatenate([pos, extra])  # stable sort: a query's labelled positives before the corrected ones
        self.pos = pos[np.argsort(self.codes[pos], kind="stable")]
        neg = np.flatnonzero(curation.selected)
        self.neg = neg[np.lexsort((curation.neg_rank[neg], self.codes[neg]))]
        self.doc_texts = np.empty(len(frame), dtype=object)
        used = np.union1d(self.pos, self.neg)
        self.doc_texts[used] = _lookup(self.doc_ids[used], coll.doc_index, coll.doc_texts, "doc", coll.name)
        self.pos_count = np.bincount(self.codes[self.pos], minlength=self.n_q)
        self.neg_count = np.bincount(self.codes[self.neg], minlength=self.n_q)
        self.neg_start = np.cumsum(self.neg_count) - self.neg_count

    def _no_negatives(self) -> int:
        return int(((self.pos_count > 0) & (self.neg_count == 0)).sum())

    def triplet(self, scores: bool = False) -> tuple[pa.Table, dict[str, Any]]:
        """`scores`: add the teacher's [positive, negative] scores as a `scores` column (sentence-transformers'
        mine_hard_negatives with output_scores). A (query, positive, negative) row whose texts repeat an earlier
        one (two documents of one text, both sampled) is written once: a trainer would see it twice for nothing;
        the notes count them as `duplicate_rows`."""
        reps = self.neg_count[self.codes[self.pos]]
        pos_rows = np.repeat(self.pos, reps)
        within = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
        neg_rows = self.neg[np.repeat(self.neg_start[self.codes[self.pos]], reps) + within]
        anchors = self.query_texts[self.codes[pos_rows]]
        once = ~pd.DataFrame({"a": anchors, "p": self.doc_texts[pos_rows],
                              "n": self.doc_texts[neg_rows]}).duplicated().to_numpy()
        pos_rows, neg_rows, anchors = pos_rows[once], neg_rows[once], anchors[once]
        columns = {
            "anchor": pa.array(anchors, pa.string()),
            "positive": pa.array(self.doc_texts[pos_rows], pa.string()),
            "negative": pa.array(self.doc_texts[neg_rows], pa.string()),
        }
        if scores:
            pair = np.column_stack([self.scores[pos_rows], self.scores[neg_rows]])
            columns["scores"] = pa.FixedSizeListArray.from_arrays(pa.array(pair.ravel(), pa.float32()), 2).cast(_SCORES)
        return pa.table(columns), {"queries_without_negatives": self._no_negatives(),
                                   "duplicate_rows": int((~once).sum())}

    def _full_quota(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Positive rows of queries with the full quota and, per such row, its query's negative rows (n columns)."""
        full = self.neg_count == self.quota
        neg_matrix = self.neg[full[self.codes[self.neg]]].reshape(-1, self.quota)
        matrix_row = np.cumsum(full) - 1
        pos_rows = self.pos[full[self.codes[self.pos]]]
        short = (self.pos_count > 0) & ~full
        notes = {"skipped_queries": int(short.sum()), "skipped_positives": int(self.pos_count[short].sum())}
        return pos_rows, neg_matrix[matrix_row[self.codes[pos_rows]]], notes

    def _ntuple_columns(self, pos_rows: np.ndarray, neg_rows: np.ndarray) -> dict[str, pa.Array]:
        columns = {
            "anchor": pa.array(self.query_texts[self.codes[pos_rows]], pa.string()),
            "positive": pa.array(self.doc_texts[pos_rows], pa.string()),
        }
        for i in range(self.quota):
            columns[f"negative_{i + 1}"] = pa.array(self.doc_texts[neg_rows[:, i]], pa.string())
        return columns

    def ntuple(self) -> tuple[pa.Table, dict[str, Any]]:
        pos_rows, neg_rows, notes = self._full_quota()
        return pa.table(self._ntuple_columns(pos_rows, neg_rows)), notes

    def ntuple_scores(self) -> tuple[pa.Table, dict[str, Any]]:
        pos_rows, neg_rows, notes = self._full_quota()
        # A NaN target would poison MarginMSE; a positive the teacher did not score has no margin to learn.
        scored = ~np.isnan(self.scores[pos_rows])
        notes["unscored_positives"] = int((~scored).sum())
        pos_rows, neg_rows = pos_rows[scored], neg_rows[scored]
        columns = self._ntuple_columns(pos_rows, neg_rows)
        label = np.column_stack([self.scores[pos_rows], self.scores[neg_rows]])
        columns["label"] = pa.FixedSizeListArray.from_arrays(pa.array(label.ravel(), pa.float32()),
                                                             self.quota + 1).cast(_SCORES)
        return pa.table(columns), notes

    def labeled_pair(self, scores: bool = False) -> tuple[pa.Table, dict[str, Any]]:
        """`scores`: the teacher's score of each pair in a `score` column instead of the 0/1 `label`."""
        rows = np.concatenate([self.pos, self.neg])
        is_neg = np.concatenate([np.zeros(len(self.pos), np.int8), np.ones(len(self.neg), np.int8)])
        order = np.lexsort((np.arange(len(rows)), is_neg, self.codes[rows]))
        rows, is_neg = rows[order], is_neg[order]
        table = pa.table({
            "anchor": pa.array(self.query_texts[self.codes[rows]], pa.string()),
            "positive": pa.array(self.doc_texts[rows], pa.string()),
            **({"score": pa.array(self.scores[rows], pa.float32())} if scores else
               {"label": pa.array(1 - is_neg, pa.int64())}),
        })
        return table, {"queries_without_negatives": self._no_negatives()}

    def flag(self) -> tuple[pa.Table, dict[str, Any]]:
        records = []
        pos_start = np.cumsum(self.pos_count) - self.pos_count
        for q in np.flatnonzero((self.pos_count > 0) & (self.neg_count > 0)):
            pos = self.pos[pos_start[q]: pos_start[q] + self.pos_count[q]]
            neg = self.neg[self.neg_start[q]: self.neg_start[q] + self.neg_count[q]]
            records.append({
                "query": self.query_texts[q],
                "pos": self.doc_texts[pos].tolist(),
                "neg": self.doc_texts[neg].tolist(),
                # JSON has no NaN: an unscored positive's score is null.
                "pos_scores": [None if np.isnan(s) else float(s) for s in self.scores[pos]],
                "neg_scores": [float(s) for s in self.scores[neg]],
                "query_id": str(self.query_ids[q]),
                "pos_ids": [str(d) for d in self.doc_ids[pos]],
                "neg_ids": [str(d) for d in self.doc_ids[neg]],
            })
        schema = pa.schema([("query", pa.string()), ("pos", pa.list_(pa.string())), ("neg", pa.list_(pa.string())),
                            ("pos_scores", _SCORES), ("neg_scores", _SCORES), ("query_id", pa.string()),
                            ("pos_ids", pa.list_(pa.string())), ("neg_ids", pa.list_(pa.string()))])
        # FlagEmbedding divides by len(neg) when it pads a group, so a query without negatives cannot go in.
        return pa.Table.from_pylist(records, schema=schema), {"queries_without_negatives": self._no_negatives()}

    def pool(self) -> tuple[pa.Table, dict[str, Any]]:
        frame = self.frame.reset_index(drop=True).assign(
            label=pd.array(np.asarray(self.curation.labels, dtype=object), dtype="string"),
            selected=self.curation.selected,
            neg_rank=self.curation.neg_rank,
            reason=pd.array(reasons(self.frame, self.curation), dtype="string"),
        ).astype(LABELLED_COLUMNS)
        return pa.Table.from_pandas(frame, preserve_index=False), {}


def _lookup(ids: Iterable[str], index: dict[str, int], texts: tuple[str, ...], kind: str, name: str) -> list[str]:
    try:
        return [texts[index[i]] for i in ids]
    except KeyError as missing:
        raise ExportError(f"{kind} id {missing.args[0]!r} in the pool is not in the collection {name!r}. "
                          "Fix: export with the collection the pool was built from") from None


def _overrides_entry(curation: Curation, n_extra: int) -> dict[str, Any]:
    """The manifest's account of a person's corrections: the file, its verdicts, the rows each label took, those
    that matched no candidate row (a labelled positive, or outside this pool), and the rows exported as positives."""
    overrides = curation.overrides
    applied = {label: curation.count(label) for label in ("unlabelled_positive", "bad_negative")}
    return {"file": str(overrides.path) if overrides.path else None, "verdicts": len(overrides), **applied,
            "not_applied": len(overrides) - sum(applied.values()), "exported_as_positives": n_extra}


def _write_hf(tables: dict[str, pa.Table], folder: Path) -> None:
    """The tables as one DatasetDict saved with save_to_disk, a dataset per format (`datasets.load_from_disk`)."""
    from ..data.hf import require_datasets

    datasets = require_datasets()
    from datasets.table import InMemoryTable

    # One shard for an empty table: datasets writes none by default, and load_from_disk then fails on the folder.
    datasets.DatasetDict({fmt: datasets.Dataset(InMemoryTable(table)) for fmt, table in tables.items()}).save_to_disk(
        str(folder), num_shards={fmt: 1 if table.num_rows == 0 else None for fmt, table in tables.items()})


def _write(table: pa.Table, path: Path) -> None:
    if path.suffix == ".parquet":
        pq.write_table(table, path)
        return
    with path.open("w", encoding="utf-8") as f:
        for record in table.to_pylist():
            f.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")


def _manifest(pool: Pool, curation: Curation, formats: tuple[str, ...], file_type: str,
              files: dict[str, dict[str, Any]], extra: dict[str, Any] | None, extra_positives: bool,
              n_extra: int) -> dict[str, Any]:
    meta = pool.meta
    params = asdict(curation.params)
    manifest: dict[str, Any] = {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "collection": meta.get("collection", {"name": pool.collection.name, "source": pool.collection.source}),
        "settings": {**meta.get("settings", {}), **params, "formats": list(formats), "file_type": file_type,
                     "extra_positives": extra_positives},
        "fingerprints": fingerprints(meta),
        "model": meta.get("model"),
        "teacher": meta.get("teacher"),
        "versions": package_versions(),
        "seed": curation.params.seed,
        "counts": {rc.label: rc.count for rc in curation.counts},
        "matched": {rc.label: rc.matched for rc in curation.counts},
        "n_queries": curation.n_queries,
        "n_full_quota": curation.n_full_quota,
        "short_queries": len(curation.short_queries),
        "n_selected": curation.n_selected,
        "summary": curation.summary(),
        **({"margin_ref_auto": curation.auto_record} if curation.auto_record is not None else {}),
        "pool_stats": meta.get("stats"),
        "overrides": _overrides_entry(curation, n_extra),
        "files": files,
    }
    manifest.update(extra or {})
    return manifest

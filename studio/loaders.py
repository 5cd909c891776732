"""Cached loaders: models, the mined pool and the UMAP map, plus reading data the person picked or uploaded.

Caching, and why each is safe to share between sessions:
- models: `st.cache_resource` (one copy per server; hnm's LoadedModel loads its weights on first use);
- the mined pool: `st.cache_resource` keyed by a hash of the collection's content and the mining settings, so a
  session only ever gets a pool of data it loaded itself. The pool is immutable: pages call `curate` on it, never
  write to it;
- the 2-D map: `st.cache_data` keyed by the pool's key and seed (project_2d also caches it on disk).
Uploads are written to a per-session temporary folder that is deleted when the session's state is.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import streamlit as st

from hnm_core.audit import SplitPool, mine_hidden_split
from hnm_core.cache import texts_digest
from hnm_core.curate import selection
from hnm_core.data import FILE_SUFFIXES, Collection, beir_splits, load_collection
from hnm_core.data.hf import hf_splits, is_hf_folder, looks_like_hub_id
from hnm_core.engines.local import MiningParams, mine
from hnm_core.errors import DataError, HnmError
from hnm_core.models.files import (
    OFFLINE_FIX,
    cross_fit_kind,
    hub_offline,
    hub_unreachable,
    in_local_cache,
    refuse_other_kind,
    resolve_model_path,
)
from hnm_core.models.loading import LoadedModel, check_cross_encoder, load_bi_encoder, load_cross_encoder
from hnm_core.pool import Pool, load_pool
from hnm_core.pool.project import project_2d
from hnm_core.prove.estimate import PROOF_SETTINGS, ProofEstimate, estimate_from_data
from hnm_core.settings import SETTINGS, from_manifest, setting
from hnm_core.wording import counted

from . import tables
from .errors import page_words
from .progress import StreamlitProgress
from .state import LoadedData, Mined

__all__ = [
    "SAMPLE_DIR", "data_kind", "collection_key", "settings_key", "changed_settings", "pool_key", "manifest_settings",
    "load_sample", "load_path", "load_uploads", "load_saved_pool", "splits_at", "scoring_splits", "selection_splits",
    "is_loaded", "is_pool_folder", "proof_estimate",
    "bi_encoder", "teacher_model", "teacher_problem", "model_problem", "mined_pool", "map_coords", "query_slices",
    "score_range",
]

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class Upload(Protocol):
    """What the loaders need of a Streamlit UploadedFile."""

    name: str

    def getvalue(self) -> bytes: ...


def collection_key(collection: Collection) -> str:
    """A hash of everything mining reads from a collection (ids, texts, labels): the identity of the data."""
    labels = [f"{q}\t{d}" for q in collection.query_ids for d in collection.positives[q]]
    parts = [texts_digest(p) for p in (collection.doc_ids, collection.doc_texts, collection.query_ids,
                                       collection.query_texts, labels)]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()


def settings_key(values: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable, order-independent form of a settings dict (list values become tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in values.items()))


def changed_settings(now: dict[str, Any], then: dict[str, Any]) -> list[str]:
    """Names whose value in `now` differs from `then` (names missing from `then` are not compared)."""
    return sorted(name for name, value in now.items()
                  if name in then and settings_key({name: value}) != settings_key({name: then[name]}))


def pool_key(data_key: str, values: dict[str, Any]) -> str:
    """The identity of a pool mined from the data `data_key` with the pool and teacher settings `values`."""
    return "mined:" + hashlib.blake2b(f"{data_key}|{settings_key(values)!r}".encode(), digest_size=16).hexdigest()


def manifest_settings(raw: bytes) -> dict[str, Any]:
    """The settings recorded in an uploaded manifest.json, validated (settings.from_manifest)."""
    return from_manifest(raw)


def _loaded(collection: Collection, origin: str, path: Path, split: str | None) -> LoadedData:
    return LoadedData(collection, collection_key(collection), origin, path, split)


def data_kind(data: LoadedData) -> Literal["sample", "upload", "pool", "path"]:
    """How `data` was loaded: the bundled sample, uploaded files, a saved pool folder, or a path (or hub id)."""
    return ("sample" if data.path == SAMPLE_DIR else "upload" if data.origin.startswith("uploaded") else
            "pool" if data.origin.startswith("saved pool") else "path")


def load_sample(split: str = setting("split").default) -> LoadedData:
    """The bundled demo collection (sample_data/)."""
    return _loaded(load_collection(SAMPLE_DIR, split=split), "bundled sample (sample_data/)", SAMPLE_DIR, split)


def load_path(path: str, split: str = setting("split").default) -> LoadedData:
    """A BEIR folder, pairs file or FlagEmbedding file on the server's disk. Raises DataError with the fix."""
    text = path.strip()
    if not text:
        raise DataError("path", "is empty.", fix="type the path of a BEIR folder or of a pairs / FlagEmbedding file")
    target = Path(text).expanduser()
    if not target.exists():
        if looks_like_hub_id(text):  # a Hugging Face hub id, org/name
            return _loaded(load_collection(text, split=split), f"Hugging Face hub {text}", target, split)
        raise DataError(target, "does not exist.", fix="check the path (it is read on the machine running the app)")
    return _loaded(load_collection(target, split=split), str(target.resolve()), target, split)


def splits_at(path: str) -> list[str]:
    """The qrels splits of the BEIR folder at `path`, or the splits of a DatasetDict saved there ([] when it is not
    a folder)."""
    folder = Path(path.strip()).expanduser() if path.strip() else None
    if folder is not None and is_hf_folder(folder):
        return hf_splits(folder)
    return sorted(beir_splits(folder)) if folder is not None and folder.is_dir() else []


@st.cache_data(show_spinner=False, max_entries=16)
def scoring_splits(path: str, train_split: str) -> list[str]:
    """The splits of the folder at `path` a proof training on `train_split` may score on (prove.scoring_splits; cached,
    as it reads every qrels file)."""
    from hnm_core.prove import scoring_splits as splits

    return splits(path, train_split)


@st.cache_data(show_spinner=False, max_entries=16)
def selection_splits(path: str, train_split: str, test_split: str) -> list[str]:
    """The splits of the folder at `path` a proof may select a variant on (prove.selection_splits; cached)."""
    from hnm_core.prove import selection_splits as splits

    return splits(path, train_split, test_split)


def proof_estimate(path: str, values: dict[str, Any], variants: int) -> ProofEstimate:
    """How long the Train page's proof would take (hnm_core.prove.estimate), from the settings it reads."""
    return _proof_estimate(path, settings_key({k: values[k] for k in PROOF_SETTINGS}), variants)


@st.cache_data(show_spinner=False, max_entries=16)
def _proof_estimate(path: str, values_key: tuple[tuple[str, Any], ...], variants: int) -> ProofEstimate:
    """Cached: the splits are read once per choice of settings."""
    return estimate_from_data(path, dict(values_key), variants)


def is_loaded(data: LoadedData | None, path: str, split: str | None) -> bool:
    """Whether loading `path` (with `split`; None for a saved pool) would load `data` again from where it was read:
    the Data page then says it is loaded instead of offering to replace it with itself (and drop its pool)."""
    text = path.strip()
    if data is None or data.path is None or not text or data_kind(data) not in ("path", "pool"):
        return False
    same = Path(text).expanduser().resolve() == data.path.expanduser().resolve() or text == str(data.path)
    return same and (split is None or data.split is None or split == data.split or not splits_at(text))


def is_pool_folder(path: str) -> bool:
    """Whether `path` holds a pool saved by `hnm pool` / `hnm mine` (read with load_saved_pool, no mining)."""
    folder = Path(path.strip()).expanduser() if path.strip() else None
    # pool.parquet is a file, or a folder of part files when the Ray engine saved the pool
    return bool(folder) and (folder / "pool.parquet").exists() and (folder / "manifest.json").is_file()


def load_saved_pool(path: str) -> tuple[LoadedData, Mined]:
    """A saved pool folder as this session's data and pool (what `hnm curate POOL_DIR` re-curates)."""
    folder = Path(path.strip()).expanduser().resolve()
    pool = load_pool(folder)
    table = folder / "pool.parquet"
    files = sorted(table.glob("*.parquet")) if table.is_dir() else [table]
    stamps = "|".join(f"{f.name}:{f.stat().st_mtime_ns}:{f.stat().st_size}" for f in files)
    key = hashlib.blake2b(f"{folder}|{stamps}".encode(), digest_size=16).hexdigest()
    data = _loaded(pool.collection, f"saved pool {folder}", folder, None)
    # the mining settings it records (ones this version does not know are left out), checked, with the table's
    # defaults for any it lacks
    known = {s.name for s in SETTINGS}
    recorded = {k: v for k, v in pool.meta.get("settings", {}).items() if k in known}
    recorded = MiningParams.from_settings(recorded).settings()
    return data, Mined(pool, f"saved:{key}", recorded, 0.0)


def _clean_name(name: str) -> str:
    """A browser-supplied file name reduced to a safe base name (no folders, no odd characters)."""
    base = _SAFE_NAME.sub("_", Path(name.replace("\\", "/")).name).strip("._")
    return base or "upload"


def load_uploads(files: Sequence[Upload], folder: Path, split: str = setting("split").default) -> LoadedData:
    """Uploaded files as a collection: corpus.jsonl + queries.jsonl + qrels TSV file(s) (BEIR), or one pairs /
    FlagEmbedding file. They are written into `folder` (emptied first) and read with hnm_core.data.

    For BEIR uploads, a `qrels*.tsv` keeps its name and any other .tsv goes to qrels/<name> (BEIR's layout), so
    `test.tsv` is the test split; when `split` is not among the uploaded splits, the first by name is read (the
    collection's `source` says which).
    """
    if not files:
        raise DataError("upload", "no file uploaded.", fix="choose corpus.jsonl, queries.jsonl and qrels.tsv, "
                                                           "or one pairs / FlagEmbedding file")
    names = [_clean_name(f.name) for f in files]
    if len(set(names)) != len(names):
        raise DataError("upload", f"two files share a name ({', '.join(sorted(names))}).",
                        fix="upload each file once")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    listing = ", ".join(names)
    if "corpus.jsonl" in names or "queries.jsonl" in names:
        missing = [n for n in ("corpus.jsonl", "queries.jsonl") if n not in names]
        qrels = [n for n in names if n.endswith(".tsv")]
        extra = [n for n in names if n not in ("corpus.jsonl", "queries.jsonl") and not n.endswith(".tsv")]
        if missing or not qrels or extra:
            raise DataError("upload", f"a BEIR upload needs corpus.jsonl, queries.jsonl and a qrels .tsv; got "
                                      f"{listing}.",
                            fix="add the missing files" + (f" and remove {', '.join(extra)}" if extra else ""))
        for upload, name in zip(files, names):
            target = folder / name if not name.endswith(".tsv") or name.startswith("qrels") else folder / "qrels" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(upload.getvalue())
        splits = sorted(beir_splits(folder))
        if split not in splits and splits:
            split = splits[0]
        return _loaded(_read_upload(folder, folder, split), f"uploaded {listing}", folder, split)
    if len(files) != 1:
        raise DataError("upload", f"{counted(len(files), 'file')} that are not a BEIR set ({listing}).",
                        fix="upload corpus.jsonl + queries.jsonl + qrels.tsv, or a single pairs / FlagEmbedding file")
    if Path(names[0]).suffix.lower() not in FILE_SUFFIXES:
        raise DataError(names[0], "is not a file type hnm reads.",
                        fix=f"upload one of {', '.join(FILE_SUFFIXES)} (pairs or FlagEmbedding)")
    target = folder / names[0]
    target.write_bytes(files[0].getvalue())
    return _loaded(_read_upload(target, folder, split), f"uploaded {listing}", target, split)


def _read_upload(target: Path, folder: Path, split: str) -> Collection:
    """load_collection of uploaded files in `folder`; an error names them as the person uploaded them (qrels/test.tsv
    is test.tsv), never by this session's temporary folder."""
    try:
        return load_collection(target, split=split)
    except DataError as error:
        def named(text: str) -> str:
            for inside in (folder / "qrels", folder):
                text = text.replace(f"{inside}/", "").replace(str(inside), "the uploaded files")
            return text

        raise DataError(named(error.path), named(error.reason), line=error.line,
                        fix=named(error.fix) if error.fix else None) from None


@st.cache_resource(show_spinner=False, max_entries=4)
def bi_encoder(name: str, precision: str, max_seq_length: int | None) -> LoadedModel:
    """One LoadedModel per (name, precision, max length) for the whole server; weights load on first encode."""
    return load_bi_encoder(name, precision=precision, max_seq_length=max_seq_length)


@st.cache_resource(show_spinner=False, max_entries=4)
def teacher_model(kind: str, name: str, precision: str, max_length: int | None) -> LoadedModel:
    """The teacher, shared like `bi_encoder` (a bi-encoder teacher with the miner's settings is the miner; a
    cross-fitted bi-encoder teacher folder loads its fold models)."""
    if kind == "bi-encoder":
        if cross_fit_kind(str(Path(name).expanduser())) is not None:
            return load_bi_encoder(name, precision=precision, max_seq_length=max_length, as_teacher=True)
        return bi_encoder(name, precision, max_length)
    return load_cross_encoder(name, precision=precision, max_length=max_length)


def teacher_problem(kind: str, name: str) -> str | None:
    """Why `name` cannot serve as a teacher of `kind`, or None: for a cross-encoder, a missing folder or no trained
    classification head; for a bi-encoder, a cross-fitted cross-encoder teacher folder. Reads only the model's
    config, weight names and teacher.json, so the page can say it while the person types, before Run; what only
    loading can show is caught when Run loads it."""
    try:
        if kind == "cross-encoder":
            check_cross_encoder(name)
        else:
            refuse_other_kind(name.strip(), str(Path(name.strip()).expanduser()), "bi-encoder")
    except HnmError as error:
        return page_words(str(error))
    return None


def model_problem(name: str) -> str | None:
    """Why the bi-encoder `name` cannot load, or None, without loading it (the Mine page says it under the box,
    before Run): an empty name or a missing folder; a hub name that is neither in the local Hugging Face cache nor
    downloadable (offline, or the hub out of reach). What only loading can show is caught when Run loads it."""
    try:
        path = resolve_model_path(name)
    except HnmError as error:
        return page_words(str(error))
    if Path(path).is_dir():
        return None
    if in_local_cache(path) or (not hub_offline() and _hub_reachable()):
        return None
    return (f"{name.strip()} is neither a folder on this machine nor a model in the local Hugging Face cache, and "
            f"the hub cannot be reached to download it. Fix: {OFFLINE_FIX}.")


@st.cache_data(show_spinner=False, ttl=300)
def _hub_reachable() -> bool:
    """Whether the Hugging Face hub can be reached (asked at most every 5 minutes: it may take 3 s)."""
    return hub_unreachable() is None


@st.cache_resource(show_spinner=False, max_entries=4)
def mined_pool(data_key: str, params: MiningParams, _collection: Collection,
               _progress: StreamlitProgress | None = None) -> Pool:
    """Pool + teacher scores for the collection whose content hash is `data_key`, under `params` (Streamlit hashes
    the frozen dataclass by its fields). Progress bars are drawn in the current container (by `_progress` when
    given, so the page can say where a stopped run stopped); on a cache hit Streamlit replays them finished.
    Embeddings and scores are also cached on disk (hnm cache folder), so a new server, or a run after a Stop,
    resumes them."""
    models = _session_models(params)
    return mine(_collection, params, **{**models, "progress": _progress or models["progress"]})


def _session_models(params: MiningParams) -> dict[str, Any]:
    """The bi-encoder and teacher `params` ask for, from the model cache, and progress drawn on the page: the
    keywords pipeline.mine and mine_hidden_split take."""
    miner, teach = params.pool, params.teacher
    encoder = bi_encoder(miner.model, miner.precision, miner.max_seq_length) if "dense" in miner.sources else None
    teacher = teacher_model(teach.model_kind, teach.teacher_model, teach.precision, teach.max_length) \
        if teach.model_kind else None
    return {"encoder": encoder, "teacher": teacher, "progress": StreamlitProgress()}


@st.cache_data(show_spinner=False, max_entries=16)
def map_coords(pool_key: str, seed: int, _pool: Pool) -> np.ndarray | None:
    """2-D UMAP coordinates of the pool's documents then its queries (rows of `collection.doc_ids`, then of
    `collection.query_ids`); None when the pool has no embeddings (BM25-only mining)."""
    doc, query = _pool.doc_embeddings, _pool.query_embeddings
    if doc is None or query is None:
        return None
    return project_2d(np.vstack([np.asarray(doc), np.asarray(query)]), seed=seed)


@st.cache_data(show_spinner=False, max_entries=16)
def query_slices(pool_key: str, _pool: Pool) -> dict[str, tuple[int, int]]:
    """query id -> its rows of the pool frame (see tables.query_slices), once per pool."""
    return tables.query_slices(_pool.frame)


@st.cache_data(show_spinner=False, max_entries=16)
def score_range(pool_key: str, _pool: Pool) -> selection.ScoreRange:
    """The teacher-score range and slider hints of a pool (hnm_core.curate.selection), once per pool."""
    return selection.score_range(_pool.frame)


@st.cache_resource(show_spinner=False, max_entries=4)
def audit_split_pool(pool_key: str, values_key: tuple[tuple[str, Any], ...], hide: float,
                     _collection: Collection) -> SplitPool:
    """The pool mined with `hide` of each query's positives hidden (seeded), for the Tune page's audit. Embeddings
    are cached by text, so this re-uses the corpus encoding of the main pool. Immutable, shared like `mined_pool`."""
    values = dict(values_key)
    return mine_hidden_split(_collection, {**values, "hide": hide},
                             **_session_models(MiningParams.from_settings(values)))

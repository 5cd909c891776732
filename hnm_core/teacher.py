"""Stage 4, teacher: rescore the pool with a stronger (or different) model, cached and resumable.

Two kinds of teacher:
- a bi-encoder (any sentence-transformers model, possibly not the miner: the NV-Retriever way) scores every row by
  cosine; it reuses the pool's embeddings when it is the miner itself;
- a cross-encoder scores (query, document) pairs jointly. At about 20 pairs/s on two CPU cores it scores only each
  query's positives and its `teacher_top_n` best candidates by fused rank; other rows stay NaN ("unscored").
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

import numpy as np

from .cache import ChunkPacer, PairScoreCache, pair_keys
from .errors import ModelOutputError
from .models import LoadedModel, load_bi_encoder, load_cross_encoder
from .pool import Pool
from .progress import Progress, no_progress
from .settings import DEFAULT_MODEL, validate
from .vectors import row_cosines

__all__ = ["score_pool", "rows_to_score", "load_teacher"]


def load_teacher(kind: Literal["bi-encoder", "cross-encoder"], name: str, *, precision: str = "auto",
                 max_length: int | None = None, eager: bool = False) -> LoadedModel:
    """The teacher model for `kind` (see models.load_bi_encoder / load_cross_encoder)."""
    if kind == "cross-encoder":
        return load_cross_encoder(name, precision=precision, max_length=max_length, eager=eager)
    return load_bi_encoder(name, precision=precision, max_seq_length=max_length, eager=eager)


def rows_to_score(pool: Pool, kind: str, top_n: int) -> np.ndarray:
    """Boolean mask of the rows a teacher scores: all of them for a bi-encoder; positives plus the `top_n` best
    candidates by fused rank for a cross-encoder."""
    frame = pool.frame
    if kind == "bi-encoder":
        return np.ones(len(frame), dtype=bool)
    fused = frame["fused_rank"].to_numpy()
    return frame["is_positive"].to_numpy() | ((fused >= 1) & (fused <= top_n))


def score_pool(
    pool: Pool,
    *,
    teacher: str = "bi-encoder",
    teacher_model: str = DEFAULT_MODEL,
    teacher_top_n: int = 30,
    precision: str = "auto",
    max_length: int | None = None,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    model: LoadedModel | None = None,
    progress: Progress = no_progress,
) -> Pool:
    """Return `pool` with `teacher_raw` and `teacher_score` filled (NaN where unscored) and `meta["teacher"]` set.

    `model` passes an already loaded teacher (the app keeps it in memory); otherwise `teacher_model` is loaded.
    Scores are cached on disk per model fingerprint, so a second call (or a larger top-N) scores only what is new.
    """
    values = validate(dict(teacher=teacher, teacher_model=teacher_model, teacher_top_n=teacher_top_n),
                      stage="teacher")
    kind = values["teacher"]
    model = model or load_teacher(kind, teacher_model, precision=precision, max_length=max_length)
    mask = rows_to_score(pool, kind, teacher_top_n)
    raw = np.full(len(pool.frame), np.nan, dtype=np.float32)
    if kind == "bi-encoder":
        raw[:] = _bi_encoder_scores(pool, model, batch_size=batch_size, cache_dir=cache_dir, progress=progress)
        score = raw.copy()
    else:
        raw[mask] = _cross_encoder_scores(pool, mask, model, batch_size=batch_size, cache_dir=cache_dir,
                                          progress=progress)
        with np.errstate(over="ignore"):
            score = (1.0 / (1.0 + np.exp(-raw.astype(np.float64)))).astype(np.float32)
    frame = pool.frame.copy()
    frame["teacher_raw"] = raw
    frame["teacher_score"] = score
    meta = {**pool.meta, "settings": {**pool.meta.get("settings", {}), **values}, "teacher": {
        "kind": kind, "name": model.name, "path": model.path, "fingerprint": model.fingerprint,
        "precision": model.precision, "max_length": model.max_length,
        "top_n": teacher_top_n if kind == "cross-encoder" else None, "scored_rows": int(mask.sum()),
        "score": "sigmoid(logit)" if kind == "cross-encoder" else "cosine",
    }}
    return dataclasses.replace(pool, frame=frame, meta=meta)


def _bi_encoder_scores(pool: Pool, model: LoadedModel, *, batch_size: int, cache_dir: str | Path | None,
                       progress: Progress) -> np.ndarray:
    frame = pool.frame
    miner = pool.meta.get("model", {})
    if miner.get("fingerprint") == model.fingerprint and not np.isnan(frame["dense_score"].to_numpy()).any():
        return frame["dense_score"].to_numpy(np.float32)  # the teacher is the miner: its cosines are already here
    from .dense import encode

    c = pool.collection
    # Prompts belong to a model: the pool's prompts are for the miner, so a different teacher encodes plain text.
    doc_emb = encode(model, c.doc_texts, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
                     stage="teacher: encode documents")
    query_emb = encode(model, c.query_texts, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
                       stage="teacher: encode queries")
    qi = frame["query_id"].map(c.query_index).to_numpy(np.int64)
    di = frame["doc_id"].map(c.doc_index).to_numpy(np.int64)
    return row_cosines(query_emb, qi, doc_emb, di)


def _cross_encoder_scores(pool: Pool, mask: np.ndarray, model: LoadedModel, *, batch_size: int,
                          cache_dir: str | Path | None, progress: Progress, chunk: int = 256) -> np.ndarray:
    """Raw logits for the masked rows; pairs already in the cache are not scored again. Scores are saved every
    `chunk` pairs or about five seconds of work, whichever comes first, so a killed run loses little."""
    frame = pool.frame[mask]
    c = pool.collection
    q_texts = np.asarray(c.query_texts, dtype=object)[frame["query_id"].map(c.query_index).to_numpy(np.int64)]
    d_texts = np.asarray(c.doc_texts, dtype=object)[frame["doc_id"].map(c.doc_index).to_numpy(np.int64)]
    keys = pair_keys(q_texts.tolist(), d_texts.tolist())
    cache = PairScoreCache(cache_dir, model.fingerprint)
    raw = cache.lookup(keys)
    todo = np.flatnonzero(np.isnan(raw))
    # Score each distinct pair once (a document can be a candidate of two queries with identical text).
    _, first = np.unique(keys[todo], return_index=True)
    todo_unique = todo[first]
    total = len(todo_unique)
    pacer = ChunkPacer(max_rows=chunk)
    progress("teacher: cross-encoder", 0, total)
    start = 0
    while start < total:
        rows = todo_unique[start : start + pacer.rows]
        pairs = [(q_texts[i], d_texts[i]) for i in rows]
        began = time.perf_counter()
        logits = model.model.predict(pairs, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
        pacer.record(len(rows), time.perf_counter() - began)
        logits = np.asarray(logits, dtype=np.float32).reshape(-1)
        if not np.isfinite(logits).all():
            raise ModelOutputError(
                f"{model.name}: produced NaN or infinite scores for {int((~np.isfinite(logits)).sum())} pairs; "
                "nothing of them was cached. Fix: check the model's weights, or run it in fp32 (--precision fp32).")
        cache.add(keys[rows], logits)
        start += len(rows)
        progress("teacher: cross-encoder", start, total)
    return cache.lookup(keys)

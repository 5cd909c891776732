"""Stage 4, teacher: rescore the pool with a stronger (or different) model, cached and resumable.

Two kinds of teacher:
- a bi-encoder (any sentence-transformers model, possibly not the miner: the NV-Retriever way) scores every row by
  cosine; it reuses the pool's embeddings when it is the miner itself;
- a cross-encoder scores (query, document) pairs jointly. At about 20 pairs/s on two CPU cores (`scoring_cost`) it
  scores only each query's positives and its `teacher_top_n` best candidates by fused rank (the rows a
  false-negative rule can act on); other rows stay NaN ("unscored"). Pairs go in batches fixed by the pool (blocks
  of 32 queries, longest first: pair_scores.py), in the model's precision (bf16 where the CPU has it), cached as they
  finish. A cross-fitted teacher (`hnm train-teacher`, see training.py) scores each query with the fold model that
  never trained on it;
- an ensemble combines `teacher_members` (the cross-encoder, the miner's cosine `dense`, `bm25`) into one score,
  keeping each member's own score as a pool column (`MEMBER_SCORE_COLUMN`: the map's hover, distillation exports).

How an ensemble calibrates (`ensemble_scores`). Members speak different units: a logit, a cosine, an unbounded BM25
score whose scale grows with the query's length. Within each query, every member's scores of the rows all members
scored are turned into mid-rank percentiles, (rank - 0.5) / n with ties averaged, and the percentiles are averaged
with equal weights. Ranks rather than z-scores because BM25 and logits are heavy-tailed (one outlier would set a
query's whole scale) and because percentiles need no assumption about a member's distribution; the reciprocal-rank
fusion of the pool's sources rests on the same argument. The result lies in (0, 1) and means the same in every query,
so the curate thresholds (ceiling, floor, the positive-aware margins) read as "above x% of this query's scored
rows". Rows a member did not score (a cross-encoder scores only the top N) stay unscored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from .. import schema
from ..errors import SettingsError
from ..manifest import digest
from ..models.loading import (
    CrossFitTeacher,
    LoadedModel,
    load_bi_encoder,
    load_cross_encoder,
)
from ..pool import Pool
from ..progress import Progress, no_progress
from ..retrieve.dense import EncodeMany
from ..retrieve.vectors import row_cosines
from ..settings import StageParams, defaults, pick, setting
from .pair_scores import pair_scores

__all__ = ["TeacherParams", "score_pool", "ScoringCost", "scoring_cost", "rows_to_score", "load_teacher", "ensemble_scores", "MEMBER_SCORE_COLUMN"]

MEMBER_SCORE_COLUMN: dict[str, str] = dict(zip(setting("teacher_members").choices, schema.MEMBER_COLUMNS))
"""Ensemble member -> the pool column holding its own score (schema.MEMBER_COLUMNS, in the same order)."""


# A MiniLM-sized cross-encoder on two CPU cores scored 17 (fp32) to 27 (bf16) pairs/s in hnm's batches
# (bench/bench_teacher.py, docs/benchmarks.md); a round figure between them, for a time estimate before a run.
CPU_PAIRS_PER_SECOND = 20


class ScoringCost(NamedTuple):
    """What a cross-encoder teacher would score: `pairs` (query, document) pairs, about `seconds` on two CPU cores
    (none cached)."""

    pairs: int
    seconds: float


def scoring_cost(n_queries: int, n_positives: int, top_n: int) -> ScoringCost:
    """The pairs a cross-encoder scores for `n_queries` queries holding `n_positives` labelled positives in all: every
    positive and each query's `top_n` best candidates (at most; a short pool has fewer), and the time they take."""
    pairs = n_queries * top_n + n_positives
    return ScoringCost(pairs, pairs / CPU_PAIRS_PER_SECOND)


@dataclass(frozen=True)
class TeacherParams(StageParams):
    """The `teacher`-stage settings plus what the teacher shares with the miner: it runs in the miner's `precision`
    and `batch_size`; a bi-encoder teacher also takes the miner's `max_seq_length` as its `max_length`, so the miner
    used as its own teacher costs nothing, while a cross-encoder keeps its own (`max_length` None, usually 512).
    Build it with `TeacherParams.from_settings(values)`: the fields have no defaults but the table's."""

    teacher: Literal["bi-encoder", "cross-encoder", "ensemble"]
    teacher_model: str
    teacher_members: tuple[Literal["cross-encoder", "dense", "bm25"], ...]
    teacher_top_n: int
    precision: Literal["auto", "fp32", "bf16"]
    batch_size: int
    max_length: int | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_length is not None:
            object.__setattr__(self, "max_length", setting("max_seq_length").check(self.max_length))
        object.__setattr__(self, "teacher_members", tuple(dict.fromkeys(self.teacher_members)))
        if self.teacher == "ensemble" and len(self.teacher_members) < 2:
            raise SettingsError(f"teacher_members: an ensemble needs two or more members, got "
                                f"{', '.join(self.teacher_members)}. Fix: pass e.g. --teacher-members "
                                "cross-encoder,dense, or --teacher with the one teacher")

    @property
    def kind(self) -> Literal["bi-encoder", "cross-encoder", "ensemble"]:
        """Which kind of teacher scores the pool (the `teacher` setting; `params.teacher.kind` reads better than
        `params.teacher.teacher`)."""
        return self.teacher

    @property
    def model_kind(self) -> Literal["bi-encoder", "cross-encoder"] | None:
        """What `teacher_model` names: the teacher itself, an ensemble's cross-encoder member, or None for an
        ensemble without one (its members are the pool's own scores)."""
        if self.kind == "ensemble":
            return "cross-encoder" if "cross-encoder" in self.teacher_members else None
        return self.kind

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> TeacherParams:
        picked = pick(values, ("teacher", "teacher_model", "teacher_members", "teacher_top_n", "precision",
                               "batch_size", "max_seq_length"))
        max_seq_length = picked.pop("max_seq_length")
        return cls(**picked, max_length=max_seq_length if picked["teacher"] == "bi-encoder" else None)

    def settings(self) -> dict[str, Any]:
        """The teacher-stage settings (precision and batch size are the miner's, recorded with the pool)."""
        return {name: getattr(self, name) for name in defaults("teacher")}


def load_teacher(params: TeacherParams, *, eager: bool = False) -> LoadedModel | None:
    """The teacher model of `params` (see models.load_bi_encoder / load_cross_encoder); None for an ensemble that
    needs no model (`TeacherParams.model_kind`)."""
    if params.model_kind is None:
        return None
    if params.model_kind == "cross-encoder":
        return load_cross_encoder(params.teacher_model, precision=params.precision, max_length=params.max_length,
                                  eager=eager)
    return load_bi_encoder(params.teacher_model, precision=params.precision, max_seq_length=params.max_length,
                           eager=eager, as_teacher=True)


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
    params: TeacherParams,
    *,
    cache_dir: str | Path | None = None,
    model: LoadedModel | None = None,
    progress: Progress = no_progress,
    encode_many: EncodeMany | None = None,
) -> Pool:
    """Return `pool` with `teacher_raw` and `teacher_score` filled (NaN where unscored) and `meta["teacher"]` set.

    `model` passes an already loaded teacher (the app keeps it in memory); otherwise `params.teacher_model` is
    loaded. Scores and embeddings are cached on disk per model fingerprint, so a second call scores nothing again.
    `encode_many` encodes a bi-encoder teacher's texts elsewhere (the Ray engine's actors), with the same bytes.
    """
    kind = params.kind
    model = model or load_teacher(params)
    # A rescored pool keeps no member scores of an earlier ensemble.
    pool = dataclasses.replace(pool, frame=pool.frame.drop(columns=list(schema.MEMBER_COLUMNS), errors="ignore"))
    if kind == "ensemble":
        return _score_ensemble(pool, params, model, cache_dir=cache_dir, progress=progress)
    assert model is not None  # only an ensemble may go without a model
    mask = rows_to_score(pool, kind, params.teacher_top_n)
    raw = np.full(len(pool.frame), np.nan, dtype=np.float32)
    routing = None
    if kind == "bi-encoder":
        raw[:], routing = _bi_encoder_scores(pool, model, batch_size=params.batch_size, cache_dir=cache_dir,
                                             progress=progress, encode_many=encode_many)
        score = raw.copy()
    else:
        raw[mask], routing = _cross_encoder_scores(pool, mask, model, batch_size=params.batch_size, cache_dir=cache_dir,
                                                   progress=progress)
        with np.errstate(over="ignore"):
            score = (1.0 / (1.0 + np.exp(-raw.astype(np.float64)))).astype(np.float32)
    frame = pool.frame.copy()
    frame["teacher_raw"] = raw
    frame["teacher_score"] = score
    meta = {**pool.meta, "settings": {**pool.meta.get("settings", {}), **params.settings()}, "teacher": {
        "kind": kind, "name": model.name, "path": model.path, "fingerprint": model.fingerprint,
        "precision": model.precision, "max_length": model.max_length,
        "top_n": params.teacher_top_n if kind == "cross-encoder" else None, "scored_rows": int(mask.sum()),
        "score": "sigmoid(logit)" if kind == "cross-encoder" else "cosine",
        **({"cross_fit": routing} if routing else {}),
    }}
    return dataclasses.replace(pool, frame=frame, meta=meta)


def ensemble_scores(query_ids: np.ndarray, members: Sequence[np.ndarray]) -> np.ndarray:
    """The ensemble score of each row (see the module docstring): the mean over `members` of the row's mid-rank
    percentile, (rank - 0.5) / n, among its query's rows that every member scored (finite); NaN for the others."""
    stack = np.vstack([np.asarray(m, dtype=np.float64) for m in members])
    scored = np.isfinite(stack).all(axis=0)
    out = np.full(stack.shape[1], np.nan, dtype=np.float32)
    if not scored.any():
        return out
    frame = pd.DataFrame(stack[:, scored].T)
    groups = pd.Series(np.asarray(query_ids)[scored])
    ranks = frame.groupby(groups.to_numpy()).rank(method="average")
    size = groups.map(groups.value_counts()).to_numpy(np.float64)
    out[scored] = ((ranks.to_numpy() - 0.5) / size[:, None]).mean(axis=1)
    return out


def _score_ensemble(pool: Pool, params: TeacherParams, model: LoadedModel | None, *, cache_dir: str | Path | None,
                    progress: Progress) -> Pool:
    """`score_pool` for an ensemble: each member's score in its MEMBER_SCORE_COLUMN column, their calibrated mean in
    `teacher_raw` and `teacher_score`."""
    frame = pool.frame.copy()
    members = params.teacher_members
    crossing = "cross-encoder" in members
    mask = rows_to_score(pool, "cross-encoder" if crossing else "bi-encoder", params.teacher_top_n)
    routing = None
    described = []
    for member in members:
        raw = np.full(len(frame), np.nan, dtype=np.float32)
        if member == "cross-encoder":
            assert model is not None  # load_teacher loads it for an ensemble with a cross-encoder
            raw[mask], routing = _cross_encoder_scores(pool, mask, model, batch_size=params.batch_size,
                                                       cache_dir=cache_dir, progress=progress)
            described.append({"member": member, "name": model.name, "path": model.path,
                              "fingerprint": model.fingerprint, "precision": model.precision, "score": "logit"})
        else:
            own = frame[f"{member}_score"].to_numpy(np.float32, na_value=np.nan)
            if np.isnan(own).all():
                raise SettingsError(f"teacher_members: the pool has no {member} scores (sources: "
                                    f"{', '.join(pool.meta.get('settings', {}).get('sources', ()))}). Fix: add "
                                    f"{member} to --sources, or leave it out of --teacher-members")
            raw[mask] = own[mask]
            if member == "dense":
                miner = pool.meta.get("model", {})
                described.append({"member": member, "name": miner.get("name"),
                                  "fingerprint": miner.get("fingerprint"), "score": "cosine (the miner's)"})
            else:
                described.append({"member": member, "name": "BM25", "score": "BM25"})
        frame[MEMBER_SCORE_COLUMN[member]] = raw
        described[-1]["column"] = MEMBER_SCORE_COLUMN[member]
    score = ensemble_scores(frame["query_id"].to_numpy(), [frame[MEMBER_SCORE_COLUMN[m]].to_numpy() for m in members])
    frame["teacher_raw"] = score
    frame["teacher_score"] = score
    meta = {**pool.meta, "settings": {**pool.meta.get("settings", {}), **params.settings()}, "teacher": {
        "kind": "ensemble", "name": "ensemble of " + " + ".join(f"{d['member']} {d['name']}" for d in described),
        "path": model.path if crossing and model is not None else None,
        "fingerprint": digest([d.get("fingerprint") or d["member"] for d in described]),
        "members": described, "top_n": params.teacher_top_n if crossing else None,
        "scored_rows": int(np.isfinite(score).sum()),
        "score": "mean of the members' per-query mid-rank percentiles",
        **({"cross_fit": routing} if routing else {}),
    }}
    return dataclasses.replace(pool, frame=frame, meta=meta)


def _bi_encoder_scores(pool: Pool, model: LoadedModel, *, batch_size: int, cache_dir: str | Path | None,
                       progress: Progress, encode_many: EncodeMany | None) -> tuple[np.ndarray, dict | None]:
    """Cosines for every row, and for a cross-fitted teacher how its rows were routed (else None)."""
    frame = pool.frame
    miner = pool.meta.get("model", {})
    if miner.get("fingerprint") == model.fingerprint and not np.isnan(frame["dense_score"].to_numpy()).any():
        return frame["dense_score"].to_numpy(np.float32), None  # the teacher is the miner: its cosines are here
    c = pool.collection
    qi = frame["query_id"].map(c.query_index).to_numpy(np.int64)
    di = frame["doc_id"].map(c.doc_index).to_numpy(np.int64)
    if not isinstance(model, CrossFitTeacher):
        return _cosines(model, c, qi, di, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
                        stage="teacher", encode_many=encode_many), None
    # Cross-fitting, as for a cross-encoder: a query's rows go to the one member that never trained on it, and a
    # query no fold holds gets the mean cosine of all members.
    fold = model.route(np.asarray(c.query_texts, dtype=object)[qi])
    unseen = fold < 0
    k = len(model.folds)
    raw = np.zeros(len(frame), dtype=np.float32)
    for i, member in enumerate(model.folds):
        rows = (fold == i) | unseen
        if rows.any():
            cos = _cosines(member, c, qi[rows], di[rows], batch_size=batch_size, cache_dir=cache_dir,
                           progress=progress, stage=f"teacher: bi-encoder fold {i + 1}/{k}", encode_many=encode_many)
            raw[rows] += np.where(unseen[rows], cos / k, cos)
    return raw, _routing(fold, k, "mean of the fold models' cosines")


def _cosines(model: LoadedModel, c: Any, qi: np.ndarray, di: np.ndarray, *, batch_size: int,
             cache_dir: str | Path | None, progress: Progress, stage: str,
             encode_many: EncodeMany | None) -> np.ndarray:
    """Cosine of each (query qi[r], document di[r]) under `model`, encoding only the queries and documents named
    (cached per model), here or by `encode_many` (the Ray engine's actors). Prompts belong to a model: the pool's
    prompts are for the miner, so a teacher encodes plain text."""
    from ..retrieve.dense import encode

    docs, d_at = np.unique(di, return_inverse=True)
    queries, q_at = np.unique(qi, return_inverse=True)
    doc_texts, query_texts = [c.doc_texts[j] for j in docs], [c.query_texts[j] for j in queries]
    if encode_many is not None:
        doc_emb, query_emb = encode_many(model, [(doc_texts, ""), (query_texts, "")])
    else:
        doc_emb = encode(model, doc_texts, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
                         stage=f"{stage}: encode documents")
        query_emb = encode(model, query_texts, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
                           stage=f"{stage}: encode queries")
    return row_cosines(query_emb, q_at, doc_emb, d_at)


def _routing(fold: np.ndarray, k: int, unseen: str) -> dict[str, Any]:
    """How a cross-fitted teacher's rows were routed, for the pool manifest."""
    seen = fold >= 0
    return {"folds": k, "rows_per_fold": np.bincount(fold[seen], minlength=k).tolist(),
            "rows_unseen": int((~seen).sum()), "unseen": unseen}


def _cross_encoder_scores(pool: Pool, mask: np.ndarray, model: LoadedModel, *, batch_size: int,
                          cache_dir: str | Path | None, progress: Progress) -> tuple[np.ndarray, dict | None]:
    """Raw logits for the masked rows, and for a cross-fitted teacher how its rows were routed (else None)."""
    frame = pool.frame[mask]
    c = pool.collection
    qi = frame["query_id"].map(c.query_index).to_numpy(np.int64)
    q_texts = np.asarray(c.query_texts, dtype=object)[qi]
    d_texts = np.asarray(c.doc_texts, dtype=object)[frame["doc_id"].map(c.doc_index).to_numpy(np.int64)]
    if not isinstance(model, CrossFitTeacher):
        return pair_scores(q_texts, d_texts, qi, model, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
                           stage="teacher: cross-encoder"), None
    # Cross-fitting: a query's rows go to the one member that never trained on it; a query no fold holds (another
    # split, another collection) gets the mean logit of all members, each of which is equally unseen by it.
    fold = model.route(q_texts)
    unseen = fold < 0
    k = len(model.folds)
    raw = np.zeros(len(fold), dtype=np.float32)
    for i, member in enumerate(model.folds):
        rows = (fold == i) | unseen
        scores = pair_scores(q_texts[rows], d_texts[rows], qi[rows], member, batch_size=batch_size,
                             cache_dir=cache_dir, progress=progress, stage=f"teacher: cross-encoder fold {i + 1}/{k}")
        raw[rows] += np.where(unseen[rows], scores / k, scores)
    return raw, _routing(fold, k, "mean of the fold models' logits")

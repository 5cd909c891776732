"""Train a teacher from the collection's own labels (RocketQA's denoising teacher), cross-fitted.

No trained cross-encoder ships here and none can be downloaded, so `train_teacher` makes one: a sentence-transformers
CrossEncoder (one logit) initialised from a local bi-encoder's transformer (default the packaged all-MiniLM-L6-v2;
its classification head is new, which is why it is trained), trained with BinaryCrossEntropyLoss on
(query, labelled positive) = 1 against (query, negative) = 0.

Or (`kind="bi-encoder"`, `--teacher-kind bi-encoder`) the base bi-encoder itself, fine-tuned with
MultipleNegativesRankingLoss on (query, positive, negative_1..n) n-tuples of the same rows: it starts from a model
that already ranks (a cross-encoder's new head starts from nothing), so a few hundred labelled pairs move it further.
It scores by cosine (`hnm mine --teacher bi-encoder --teacher-model TEACHER_DIR`), each query by its unseen fold.

Negatives come from beyond the likely-false-negative band. The pool (pool.build_pool, the same retrieval `hnm mine`
runs) ranks each query's candidates; the unlabelled positives among them sit near the top (on sample_data every one
is in the dense top 10, median rank 2). A candidate is in the band when its fused rank or its rank in either source
is within `band` (default 20: twice the depth that holds all of sample_data's unlabelled positives); it is never
taught as a negative. Negatives are drawn uniformly, seeded per query, from the rest of the pool (ranks
band+1 .. top_k of both sources): still topical, so the teacher learns relevance rather than topic,
without learning to call unlabelled positives irrelevant.

Cross-fitting: a teacher trained on a query's labels has seen its positives and would grade its candidates against
that memory (and the audit's hidden positives would be "caught" for free). So the queries with positives are split
into k folds (distinct query texts, seeded shuffle, round-robin), and fold i's model trains on every other fold's
queries only. Scoring (teacher.score_pool) sends each query to the one fold model that never saw it, by a hash of
the query text. A query no fold holds (another split, a new collection) is scored by the mean logit of the k fold
models: each is equally unseen by it, and the mean costs no extra training (it costs k forward passes per pair).

Folder written (`out_dir`), recognised by models.load_cross_encoder (or, for bi-encoder folds, by
models.load_bi_encoder with as_teacher=True) and so by `hnm mine --teacher <kind> --teacher-model out_dir`:

    teacher.json   manifest: folds -> query ids and text keys, base model fingerprint, every setting, rows per
                   fold, seconds, seed, versions; "trained_positives", a hash of each (query, positive) text pair
                   the folds trained on (so `hnm audit` can refuse a teacher that saw its hidden positives);
                   "complete" once every fold is trained
    fold-0/ ...    one CrossEncoder (or SentenceTransformer) per fold, each with hnm_fold.json (what it trained on)

A person's verdicts teach too (`overrides`, `hnm train-teacher --overrides FILE`: an overrides file or a filled
review file, hnm_core.curate.overrides): a candidate judged an unlabelled positive is taught as a positive of its
query, and one confirmed as a negative or judged a bad negative as a negative (in band or not: a negative a person
read is the one worth teaching). Cross-fitting stays honest because a verdict belongs to its query, and a query's
rows only ever train the folds that do not hold it: the fold that scores the query never saw its verdicts. Verdicts
on a query no fold holds (one without labelled positives) would reach every fold, and so the mean that scores it;
they are left out and counted. The verdicts are part of the teacher's plan (a rerun with others is another teacher)
and its unlabelled positives join `trained_positives`.

Resumable: each fold is trained in a temporary folder and renamed into place when saved, so a killed run leaves only
finished folds; a rerun with the same settings keeps them and trains the rest. Seeded: the same data and settings
give the same weights (on the same hardware and library versions).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Collection
from ..errors import ExportError, SettingsError
from ..manifest import atomic_write_bytes, digest, package_versions
from ..models.checkpoints import Checkpoints
from ..models.loading import (
    CROSS_FIT_MANIFEST,
    LoadedModel,
    check_cross_encoder,
    load_bi_encoder,
    pair_key,
    query_key,
    resolve_precision,
)
from ..outputs.folder import refuse_inputs
from ..pool import PoolParams
from ..progress import Progress, no_progress
from ..settings import setting
from ..wording import counted
from .folds import read_info, train_bi_encoder_fold, train_cross_encoder_fold

__all__ = ["train_teacher", "train_options", "TeacherTrainResult", "FoldResult", "fold_queries", "training_rows",
           "verdicts_by_query", "POSITIVE_VERDICTS", "NEGATIVE_VERDICTS"]

# The verdict kinds of hnm_core.curate.overrides (which this stage may not import) by what they teach; a test checks
# that together they are every kind there.
POSITIVE_VERDICTS = ("unlabelled_positive",)
NEGATIVE_VERDICTS = ("confirmed_negative", "bad_negative")


@dataclass(frozen=True)
class FoldResult:
    """One fold of a cross-fitted teacher: the queries it holds out and what its model trained on."""

    index: int
    query_ids: tuple[str, ...]  # held out: this fold's model never saw them, and it is the one that scores them
    path: Path
    trained: bool  # False when a finished fold of an earlier run was kept
    train_queries: int
    positives: int
    negatives: int
    in_band: int  # candidates of the training queries left out as likely false negatives
    seconds: float  # training time (of the run that trained it)


@dataclass(frozen=True)
class TeacherTrainResult:
    out_dir: Path
    folds: tuple[FoldResult, ...]
    manifest: dict[str, Any]

    @property
    def trained(self) -> int:
        return sum(f.trained for f in self.folds)

    @property
    def reused(self) -> int:
        return sum(not f.trained for f in self.folds)

    def sentences(self) -> list[str]:
        out = []
        for f in self.folds:
            what = f"trained in {f.seconds:.1f} s" if f.trained else "kept from an earlier run"
            out.append(f"Fold {f.index}: holds out {counted(len(f.query_ids), 'query', 'queries')}; its model "
                       f"learnt {counted(f.positives, 'positive')} and {counted(f.negatives, 'negative')} from "
                       f"{counted(f.train_queries, 'other query', 'other queries')}, leaving out "
                       f"{counted(f.in_band, 'candidate')} ranked within the top {self.manifest['settings']['band']} "
                       f"(likely false negatives); {what}.")
        return out


def fold_queries(collection: Collection, folds: int, seed: int) -> list[tuple[str, ...]]:
    """Query ids per fold: queries with positives, grouped by text (two ids with one text share a fold, so no model
    sees the text it will score), shuffled with `seed` and dealt round-robin."""
    by_key: dict[str, list[str]] = {}
    for qid, text in zip(collection.query_ids, collection.query_texts):
        if collection.positives.get(qid):
            by_key.setdefault(query_key(text), []).append(qid)
    keys = sorted(by_key)
    order = np.random.default_rng(seed).permutation(len(keys))
    out: list[list[str]] = [[] for _ in range(folds)]
    for position, i in enumerate(order.tolist()):
        out[position % folds].extend(by_key[keys[i]])
    return [tuple(sorted(ids, key=collection.query_index.__getitem__)) for ids in out]


def verdicts_by_query(overrides: Iterable[Any]) -> dict[str, dict[str, str]]:
    """query id -> {doc id: verdict} from records with query_id, doc_id and verdict (hnm_core.curate's
    Overrides.entries)."""
    out: dict[str, dict[str, str]] = {}
    for record in overrides:
        out.setdefault(record.query_id, {})[record.doc_id] = record.verdict
    return out


def training_rows(pool_frame: Any, collection: Collection, query_ids: tuple[str, ...], *, band: int,
                  negatives_per_positive: int, seed: int, verdicts: Mapping[str, Mapping[str, str]] | None = None
                  ) -> tuple[list[tuple[str, str, float]], dict[str, int]]:
    """(query text, document text, label) rows for `query_ids`: each labelled positive (1.0), and per query up to
    `negatives_per_positive` x its positives negatives (0.0) drawn from its candidates beyond the `band` (see the
    module docstring). The draw is seeded per (seed, query text), so a query gets the same negatives in every fold.
    verdicts: query id -> {doc id: verdict} (`verdicts_by_query`) of a person's verdicts: unlabelled positives join
    the query's positives, confirmed and bad negatives come first among its negatives (the draw fills the rest), and
    no judged document is drawn. Returns the rows and counts of what was kept and left out."""
    frame = pool_frame[pool_frame["query_id"].isin(set(query_ids))]
    cand = frame[~frame["is_positive"].to_numpy()]

    def within(column: str) -> np.ndarray:
        rank = cand[column].to_numpy()
        return (rank >= 1) & (rank <= band)

    in_band = within("fused_rank") | within("bm25_rank") | within("dense_rank")
    beyond = cand[~in_band].groupby("query_id", sort=False)["doc_id"].agg(list).to_dict()
    rows: list[tuple[str, str, float]] = []
    counts = {"queries": 0, "positives": 0, "negatives": 0, "in_band": int(in_band.sum()), "short": 0,
              "verdict_positives": 0, "verdict_negatives": 0}
    c = collection
    for qid in query_ids:
        positives = c.positives.get(qid, ())
        if not positives:
            continue
        text = c.query_texts[c.query_index[qid]]
        judged = {d: v for d, v in (verdicts or {}).get(qid, {}).items() if d not in positives}
        taught = [d for d, v in judged.items() if v in NEGATIVE_VERDICTS]
        positives = (*positives, *(d for d, v in judged.items() if v in POSITIVE_VERDICTS))
        counts["queries"] += 1
        rows += [(text, c.doc_texts[c.doc_index[d]], 1.0) for d in positives]
        rows += [(text, c.doc_texts[c.doc_index[d]], 0.0) for d in taught]
        pool_ids = sorted(d for d in beyond.get(qid, []) if d not in judged)
        want = negatives_per_positive * len(positives)
        rng = np.random.default_rng([seed, int(query_key(text), 16)])
        size = min(max(want - len(taught), 0), len(pool_ids))
        picked = rng.choice(len(pool_ids), size=size, replace=False) if pool_ids else []
        rows += [(text, c.doc_texts[c.doc_index[pool_ids[j]]], 0.0) for j in sorted(picked)]
        counts["positives"] += len(positives)
        counts["negatives"] += len(picked) + len(taught)
        counts["verdict_positives"] += len(positives) - len(c.positives[qid])
        counts["verdict_negatives"] += len(taught)
        counts["short"] += len(picked) + len(taught) < want
    return rows, counts


def train_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """`train_teacher`'s keyword arguments from settings by name (the `teacher_train` stage and the seed)."""
    return {"kind": values["teacher_kind"], "base_model": values["base_model"], "folds": values["folds"],
            "negatives_per_positive": values["negatives_per_positive"], "band": values["band"],
            "epochs": values["teacher_epochs"], "batch_size": values["teacher_batch_size"], "lr": values["teacher_lr"],
            "max_length": values["teacher_max_length"], "precision": values["teacher_precision"],
            "seed": values["seed"]}


def train_teacher(
    collection: Collection,
    out_dir: str | Path,
    *,
    kind: str = setting("teacher_kind").default,
    base_model: str = setting("base_model").default,
    folds: int = setting("folds").default,
    negatives_per_positive: int = setting("negatives_per_positive").default,
    band: int = setting("band").default,
    epochs: float = setting("teacher_epochs").default,
    batch_size: int = setting("teacher_batch_size").default,
    lr: float = setting("teacher_lr").default,
    max_length: int = setting("teacher_max_length").default,
    precision: str = setting("teacher_precision").default,
    seed: int = setting("seed").default,
    pool_settings: Mapping[str, Any] | None = None,
    overrides: Iterable[Any] | None = None,
    encoder: LoadedModel | None = None,
    cache_dir: str | Path | None = None,
    checkpoint_minutes: float = setting("checkpoint_minutes").default,
    overwrite: bool = False,
    inputs: Sequence[str | Path] = (),
    progress: Progress = no_progress,
) -> TeacherTrainResult:
    """Train a cross-fitted teacher on `collection`'s labels into `out_dir` (see the module docstring).

    kind: "cross-encoder" (a CrossEncoder per fold, binary cross-entropy) or "bi-encoder" (the base bi-encoder
        fine-tuned per fold with MultipleNegativesRankingLoss on (query, positive, its negatives) n-tuples).
    base_model: the local model whose transformer initialises each fold's model (a bi-encoder folder, the
        packaged all-MiniLM-L6-v2 by default, or a cross-encoder to fine-tune further).
    folds: k of the cross-fitting, at least 2: fold i's model trains on the other k-1 folds' queries.
    negatives_per_positive: negatives drawn per labelled positive of a training query.
    band: candidates ranked within this depth (fused, BM25 or dense rank) are likely false negatives, never taught.
    epochs, batch_size, lr: the CrossEncoderTrainer's epochs, pairs per batch and peak learning rate (10% warm-up);
        settings `teacher_epochs`, `teacher_batch_size` and `teacher_lr`.
    max_length: tokens per (query, document) pair, kept by the saved models for scoring.
    precision: "fp32", "bf16" (mixed precision: bf16 autocast, fp32 weights) or "auto" (bf16 where the device has it,
        a CPU with avx512_bf16 included); the one it resolves to is a setting of the folder (it changes the weights).
    seed: the fold split, the negatives drawn, the new head's initialisation and the training order.
    pool_settings: pool-stage settings (settings.py) for the retrieval negatives are drawn from; `hnm mine`'s
        defaults otherwise. `encoder` passes its bi-encoder already loaded.
    overrides: a person's verdicts (hnm_core.curate's Overrides.entries: records with query_id, doc_id, verdict),
        taught as labels, each query's only to the folds that do not hold it (see the module docstring).
    overwrite: replace a teacher trained with other settings in `out_dir`; without it such a folder is refused,
        while one trained with the same settings is resumed (finished folds are kept, and the fold that was
        stopped resumes from its checkpoint).
    cache_dir, checkpoint_minutes: where (default $HNM_CACHE_DIR or ~/.cache/hnm) and how often (0: never) a fold's
        training saves itself (models/checkpoints.py); also the retrieval's embedding cache.
    inputs: paths the run reads (the data folder or file): `out_dir` may not be, hold or lie inside one.
    """
    if kind not in ("cross-encoder", "bi-encoder"):
        raise SettingsError(f"teacher_kind {kind!r} is not one of cross-encoder, bi-encoder")
    if folds < 2:
        raise SettingsError(f"folds: {folds} is below the minimum 2 (cross-fitting needs a model that did not see "
                            "each query). Fix: pass --folds 2 or more")
    for name, value, low in (("negatives_per_positive", negatives_per_positive, 1), ("band", band, 0),
                             ("batch_size", batch_size, 1), ("max_length", max_length, 8)):
        if value < low:
            raise SettingsError(f"{name}: {value} is below the minimum {low}")
    if not epochs > 0 or not lr > 0:
        raise SettingsError(f"epochs ({epochs}) and lr ({lr}) must be above 0")
    pool_params = PoolParams.from_settings({**(pool_settings or {}), "seed": seed})
    values = pool_params.settings()
    base = load_bi_encoder(base_model, precision="fp32")  # a folder is fingerprinted from its files, not loaded
    bf16 = resolve_precision(precision, base.device) == "bf16"
    split = fold_queries(collection, folds, seed)
    empty = [i for i, ids in enumerate(split) if not ids]
    if empty:
        n = sum(map(len, split))
        raise SettingsError(f"folds: {folds} folds for {n} queries with positives leaves fold {empty[0]} empty. "
                            f"Fix: pass --folds {max(2, min(n, folds - 1))} or fewer")
    settings = {"kind": kind, "base_model": base.name, "folds": folds, "negatives_per_positive": negatives_per_positive,
                "band": band, "epochs": epochs, "batch_size": batch_size, "lr": lr, "max_length": max_length,
                "precision": "bf16" if bf16 else "fp32", "seed": seed,
                "pool": {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}}
    fold_plan = [{"index": i, "path": f"fold-{i}", "query_ids": list(ids),
                  "query_keys": sorted({query_key(collection.query_texts[collection.query_index[q]]) for q in ids})}
                 for i, ids in enumerate(split)]
    # Every query with positives is in one fold and so in the training of the k-1 others: together the folds trained
    # on every labelled positive. An audit checks its hidden positives against this list (audit.vet_teacher).
    c = collection
    held = {q for ids in split for q in ids}
    judged = verdicts_by_query(overrides or ())
    verdicts = {q: docs for q, docs in judged.items() if q in held}
    untaught = sum(len(docs) for q, docs in judged.items() if q not in held)
    extra = {q: tuple(d for d, v in docs.items() if v in POSITIVE_VERDICTS) for q, docs in verdicts.items()}
    trained_positives = sorted({pair_key(c.query_texts[c.query_index[q]], c.doc_texts[c.doc_index[d]])
                                for ids in split for q in ids for d in (*c.positives.get(q, ()), *extra.get(q, ()))})
    plan = {"settings": settings, "base_fingerprint": base.fingerprint,
            "collection": {"name": collection.name, "queries": len(collection.query_ids),
                           "docs": len(collection.doc_ids), "positives": sum(map(len, collection.positives.values())),
                           "trained_positives": digest(trained_positives)},
            "folds": [{k: f[k] for k in ("index", "path", "query_keys")} for f in fold_plan]}
    if verdicts:  # only then: a teacher trained before verdicts were taught keeps its plan, and resumes
        plan["verdicts"] = digest(sorted([q, d, v] for q, docs in verdicts.items() for d, v in docs.items()))
    out = Path(out_dir)
    _claim(out, plan, overwrite=overwrite, inputs=inputs)

    manifest: dict[str, Any] = {
        "kind": f"hnm cross-fitted {kind} teacher", "model_kind": kind, "format": 1, "complete": False,
        "plan": digest(plan), "settings": settings,
        "base": {"name": base.name, "path": base.path, "fingerprint": base.fingerprint},
        "collection": {**plan["collection"], "source": collection.source},
        "unseen_queries": f"mean of the fold models' {'logits' if kind == 'cross-encoder' else 'cosines'}",
        "folds": [{**f, "status": "pending"} for f in fold_plan], "versions": package_versions(),
        "trained_positives": trained_positives,
        "verdicts": {"taught": sum(map(len, verdicts.values())), "untaught": untaught,
                     "positives": sum(map(len, extra.values()))},
    }
    # Written before any fold, so a rerun can tell whether the folds it finds were trained with these settings.
    atomic_write_bytes(out / CROSS_FIT_MANIFEST, json.dumps(manifest, indent=2).encode())
    results: list[FoldResult] = []
    frame = None
    for i, ids in enumerate(split):
        folder = out / f"fold-{i}"
        info = read_info(folder)
        trained_now = info is None
        if info is None:
            shutil.rmtree(folder, ignore_errors=True)  # a fold folder without its info file was not made by us
            if frame is None:  # retrieval only when a fold is left to train
                from ..pool import build_pool

                frame = build_pool(collection, pool_params, cache_dir=cache_dir, encoder=encoder,
                                   progress=progress).frame
            train_ids = tuple(q for j, other in enumerate(split) if j != i for q in other)
            rows, counts = training_rows(frame, collection, train_ids, band=band,
                                         negatives_per_positive=negatives_per_positive, seed=seed, verdicts=verdicts)
            recipe = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "max_length": max_length, "bf16": bf16,
                      "seed": seed,
                      "info": {**counts, "held_out": list(ids), "rows": len(rows)}, "progress": progress,
                      "stage": f"train teacher: fold {i + 1}/{folds}",
                      "checkpoints": Checkpoints(cache_dir, {"teacher": digest(plan), "fold": i, "rows": digest(rows),
                                                             "device": base.device}, checkpoint_minutes)}
            if kind == "cross-encoder":
                train_cross_encoder_fold(rows, base.path, folder, **recipe)
            else:
                train_bi_encoder_fold(rows, base.path, folder, negatives=negatives_per_positive, **recipe)
            info = read_info(folder)
            assert info is not None
        results.append(FoldResult(i, ids, folder, trained_now, info["queries"], info["positives"], info["negatives"], info["in_band"],
                                  info["seconds"]))
        manifest["folds"][i].update(status="trained", **{k: info[k] for k in (
            "rows", "queries", "positives", "negatives", "in_band", "short", "seconds")})
        manifest["complete"] = i == len(split) - 1
        atomic_write_bytes(out / CROSS_FIT_MANIFEST, json.dumps(manifest, indent=2).encode())
    if kind == "cross-encoder":
        check_cross_encoder(str(out))
    return TeacherTrainResult(out, tuple(results), manifest)


def _claim(out: Path, plan: dict[str, Any], *, overwrite: bool, inputs: Sequence[str | Path]) -> None:
    """Make `out` ready for the teacher `plan`: keep the folds of an unfinished or finished run of the same plan,
    refuse (or with `overwrite`, clear) a teacher of another plan, and remove temporary folders of killed runs.
    A teacher folder is resumable, so it keeps its own rules rather than outdir's replace-all-at-once; like every
    output it may not touch the data it reads."""
    refuse_inputs(out, inputs)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file. Fix: choose a folder path for --out (a new or empty folder)")
    manifest_file = out / CROSS_FIT_MANIFEST
    if manifest_file.is_file():
        try:
            earlier = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            earlier = {}
        if earlier.get("plan") != digest(plan):
            if not overwrite:
                changed = sorted(k for k, v in plan["settings"].items() if earlier.get("settings", {}).get(k) != v)
                what = f"other settings ({', '.join(changed)})" if changed else "another base model or other data"
                raise ExportError(f"{out} already holds a teacher trained with {what}. Fix: choose another --out "
                                  "folder or pass --overwrite")
            for folder in out.glob("fold-*"):
                shutil.rmtree(folder)
            manifest_file.unlink()
    elif out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise ExportError(f"{out} is not empty and holds no {CROSS_FIT_MANIFEST}. Fix: choose an empty or new --out "
                          "folder")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".fold-*.tmp*"):
        shutil.rmtree(stale, ignore_errors=True)



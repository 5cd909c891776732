"""`mine_hard_negatives(dataset, model, ...)`: sentence-transformers' function of the same name, run by hnm.

It takes a `datasets.Dataset` of (anchor, positive) pairs and returns a Dataset in the same output formats, ready for
`SentenceTransformerTrainer`, with every argument of theirs that has a meaning here meaning the same
(docs/python-api.md maps each to hnm's setting). Underneath it is hnm's pipeline: `pipeline.mine` builds and scores
the pool, `curate` labels it (each drop with its reason), `export.export_tables` cuts the rows, so hnm's own knobs
(BM25 pooling, the near-duplicate guard, the cluster rule, a trained teacher, a person's verdicts) are keyword
arguments away, and `return_pool=True` hands back the labelled pool. Arguments it does not support raise
SettingsError; none is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pandas as pd

from .errors import DataError, SettingsError
from .settings import setting

__all__ = ["mine_hard_negatives", "HardNegatives", "OUTPUT_FORMATS"]

OUTPUT_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")

# sentence-transformers' arguments hnm does not take, with what to do instead.
_UNSUPPORTED = {
    "faiss_batch_size": "hnm searches a block of queries at a time of its own (pool.build_pool's query_block); "
                        "leave it out",
    "use_multi_process": "hnm encodes in this process; for many devices mine with hnm's Ray engine (hnm mine "
                         "--engine ray), or leave it out",
    "as_triplets": "use output_format='triplet' or 'n-tuple'",
    "margin": "use absolute_margin=",
}
_DOCUMENT_PROMPTS = ("document", "passage", "corpus")  # what encode_document falls back to, in its order


class HardNegatives(NamedTuple):
    """What `mine_hard_negatives(..., return_pool=True)` returns: the Dataset it would return alone, the labelled
    pool (one row per query and candidate or positive, with texts, scores, ranks, `label`, `selected` and the
    `reason` for its label) and the curation's summary sentences."""

    dataset: Any
    pool: pd.DataFrame
    summary: list[str]


def mine_hard_negatives(
    dataset: Any,
    model: Any,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: Iterable[str] | None = None,
    cross_encoder: Any = None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: Literal["top", "random", "simans"] = "top",
    query_prompt_name: str | None = None,
    query_prompt: str | None = None,
    corpus_prompt_name: str | None = None,
    corpus_prompt: str | None = None,
    include_positives: bool = False,
    output_format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"] = "triplet",
    output_scores: bool = False,
    batch_size: int = setting("batch_size").default,
    use_faiss: bool = False,
    verbose: bool = True,
    cache_folder: str | Path | None = None,
    *,
    sources: Sequence[str] | str | None = None,
    near_dup: float | None = None,
    cluster_rule: bool = setting("cluster_rule").default,
    teacher: Literal["bi-encoder", "cross-encoder", "ensemble"] | None = None,
    teacher_model: str | None = None,
    overrides: str | Path | None = None,
    seed: int = setting("seed").default,
    precision: Literal["auto", "fp32", "bf16"] | None = None,
    return_pool: bool = False,
    **unsupported: Any,
) -> Any:
    """Mine hard negatives for a Dataset of (anchor, positive) pairs, as sentence-transformers'
    `util.mine_hard_negatives` does, with hnm's pipeline; returns a `datasets.Dataset` in `output_format`.

    Their arguments (docs/python-api.md has the table of each against hnm's setting):
    dataset: the pairs; a repeated anchor has several positives. anchor_column_name / positive_column_name: its
        columns (default: the first and the second); a name that is not a column is an error.
    model: a SentenceTransformer (used as it is) or a name or folder (loaded in `precision`).
    corpus: more candidate documents besides the positives. cross_encoder: a CrossEncoder (or a name or folder)
        that rescores every candidate: its sigmoid scores order, filter and (output_scores) report them.
    range_min: skip the first range_min candidates (hnm's skip_n: by dense rank). range_max: candidates per query
        (default as theirs: range_min + num_negatives + the most positives of an anchor, ten times the negatives
        with a score rule).
    max_score / min_score: drop candidates scored above / below (hnm's ceiling / floor). absolute_margin /
        relative_margin: drop candidates scored above the anchor's lowest positive score minus the margin (relative:
        minus |score| * margin).
    num_negatives: negatives per anchor. sampling_strategy: "top" (the best-scored), "random" (seeded), or hnm's
        "simans". query_prompt / corpus_prompt (or their *_prompt_name in model.prompts): text before each query /
        document when encoding; by default the model's "query" / "document" prompts, as encode_query does.
    output_format: "triplet", "n-tuple", "labeled-pair" or "labeled-list"; output_scores adds the scores (their
        column names). batch_size: texts per encoder batch. use_faiss: hnm always searches with faiss, exactly.
    verbose: progress bars and the curation's summary. cache_folder: hnm's embedding and score cache (default
        $HNM_CACHE_DIR or ~/.cache/hnm).
    include_positives is not supported (positives never become candidates in hnm; return_pool=True shows their
    ranks), nor are faiss_batch_size, use_multi_process, as_triplets and margin: each raises SettingsError.

    hnm's own (keyword only): sources: the retrievers pooled ("dense" by default, as theirs; "bm25,dense" adds
    BM25's top candidates); near_dup: drop candidates with a cosine above this to a positive; cluster_rule: drop
    candidates in a positive's k-means cluster; teacher / teacher_model: any hnm teacher (a `hnm train-teacher`
    folder, an ensemble); overrides: a JSONL file of your verdicts (hnm_core.curate.overrides); seed: for every random
    step; precision: fp32 (default for a model given by name, as sentence-transformers loads it), bf16 or auto;
    return_pool: return a HardNegatives (dataset, labelled pool, summary) instead of the Dataset alone.
    """
    from .data.hf import collection_from_dataset, require_datasets

    datasets = require_datasets()
    _refuse(unsupported, include_positives, output_format)
    if not isinstance(dataset, datasets.Dataset):
        raise SettingsError(f"dataset is a {type(dataset).__name__}, not a datasets.Dataset. Fix: pass one split "
                            "(dataset['train']), or Dataset.from_dict({'anchor': [...], 'positive': [...]})")
    if len(dataset) == 0:
        raise DataError("dataset", "is empty", fix="give at least one (anchor, positive) row")
    anchor, positive = _columns(dataset.column_names, anchor_column_name, positive_column_name)
    if range_min < 0:
        raise SettingsError(f"range_min: {range_min} is below 0. Fix: give 0 or more")
    collection = collection_from_dataset(dataset, anchor, positive, corpus=corpus)
    most_positives = max(len(p) for p in collection.positives.values())
    if range_max is None:
        scoring = any(v is not None for v in (absolute_margin, relative_margin, max_score)) or (
            cross_encoder is not None and min_score is not None)
        range_max = range_min + num_negatives * (10 if scoring else 1) + most_positives
    if num_negatives > range_max - range_min:
        raise SettingsError(f"num_negatives: {num_negatives} cannot fit between range_min {range_min} and "
                            f"range_max {range_max}. Fix: lower num_negatives or range_min, or raise range_max")
    encoder = _model("bi-encoder", model, precision)
    values = {
        # Theirs retrieve range_max + most_positives + 1 documents and drop the anchor's positives and its own text
        # (hnm drops the latter as a verdict, below): an anchor with one positive keeps range_max + most_positives.
        "sources": sources or ("dense",), "top_k": range_max + most_positives, "model": encoder.path or encoder.name,
        "precision": encoder.precision, "max_seq_length": encoder.max_length or setting("max_seq_length").default,
        "query_prompt": _prompt(encoder.model, query_prompt, query_prompt_name, ("query",)),
        "doc_prompt": _prompt(encoder.model, corpus_prompt, corpus_prompt_name, _DOCUMENT_PROMPTS),
        "index": "exact", "batch_size": batch_size, "seed": seed, "skip_n": range_min, "ceiling": max_score,
        "floor": min_score, "absolute_margin": absolute_margin, "relative_margin": relative_margin,
        "margin_ref": "min", "near_dup": near_dup, "cluster_rule": cluster_rule, "negatives": num_negatives,
        "sampling": sampling_strategy,
    }
    values.update(_teacher(values, cross_encoder, teacher, teacher_model))
    return _run(collection, values, encoder, cross_encoder, anchor, positive, output_format, output_scores,
                overrides=overrides, cache_dir=cache_folder, verbose=verbose, return_pool=return_pool)


def _refuse(unsupported: dict[str, Any], include_positives: bool, output_format: str) -> None:
    for name in unsupported:
        fix = _UNSUPPORTED.get(name, "check the spelling against sentence_transformers.util.mine_hard_negatives "
                                     "and hnm_core.mine_hard_negatives' keyword arguments")
        known = "is not supported by hnm_core.mine_hard_negatives" if name in _UNSUPPORTED else "is not an argument"
        raise SettingsError(f"{name} {known}. Fix: {fix}")
    if include_positives:
        raise SettingsError("include_positives=True is not supported: hnm never ranks a labelled positive among the "
                            "candidates. Fix: leave it out; return_pool=True gives each positive's dense rank")
    if output_format not in OUTPUT_FORMATS:
        raise SettingsError(f"output_format: {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}. Fix: use "
                            "'n-tuple' with output_scores=True for scored tuples")


def _columns(names: Sequence[str], anchor: str | None, positive: str | None) -> tuple[str, str]:
    """The anchor and positive columns: as given, else the first and the second column (theirs fall back to those
    for a name that is not a column too; hnm says so instead)."""
    for given, role in ((anchor, "anchor_column_name"), (positive, "positive_column_name")):
        if given is not None and given not in names:
            raise DataError("dataset", f"has no column {given!r} ({role}); its columns are {', '.join(names)}",
                            fix=f"pass one of them as {role}")
    if len(names) < 2 and (anchor is None or positive is None):
        raise DataError("dataset", f"has {len(names)} column", fix="give anchor and positive columns")
    return anchor or names[0], positive or names[1]


def _model(kind: Literal["bi-encoder", "cross-encoder"], model: Any, precision: str | None) -> Any:
    """A LoadedModel: a name or folder loaded in `precision` (fp32 unless given), or an instance used as it is."""
    from .models.loading import LoadedModel, load_bi_encoder, load_cross_encoder

    if isinstance(model, (str, Path)):
        load = load_bi_encoder if kind == "bi-encoder" else load_cross_encoder
        return load(str(model), precision=precision or "fp32")
    if precision is not None:
        raise SettingsError(f"precision applies to a model given by name; this {kind} is used as it is. Fix: "
                            "convert it (model.bfloat16()) or leave precision out")
    return LoadedModel.from_instance(kind, model)


def _prompt(model: Any, prompt: str | None, name: str | None, fallbacks: Sequence[str]) -> str:
    """The prompt text sentence-transformers' encode_query / encode_document would put before each text."""
    prompts = getattr(model, "prompts", None) or {}
    if prompt is not None:
        return prompt
    if name is not None:
        if name not in prompts:
            raise SettingsError(f"prompt name {name!r} is not in the model's prompts ({', '.join(prompts) or 'none'}). "
                                "Fix: pass one of them, or the text itself as query_prompt / corpus_prompt")
        return prompts[name]
    return next((prompts[key] for key in fallbacks if key in prompts), "")


def _teacher(values: dict[str, Any], cross_encoder: Any, teacher: str | None,
             teacher_model: str | Path | None) -> dict[str, Any]:
    """The teacher settings: the cross-encoder when one is given (scoring every candidate), else `teacher`, else
    the miner itself (its cosines, as theirs use)."""
    if cross_encoder is not None:
        if teacher not in (None, "cross-encoder") or teacher_model is not None:
            raise SettingsError("cross_encoder is the teacher; teacher / teacher_model choose another. Fix: give "
                                "one of them")
        return {"teacher": "cross-encoder", "teacher_top_n": values["top_k"],
                "teacher_model": str(cross_encoder) if isinstance(cross_encoder, (str, Path)) else "(in memory)"}
    if teacher is None and teacher_model is None:
        return {"teacher": "bi-encoder", "teacher_model": values["model"]}
    return {"teacher": teacher or "bi-encoder", "teacher_model": str(teacher_model or values["model"]),
            "teacher_top_n": values["top_k"]}


def _run(collection: Any, values: dict[str, Any], encoder: Any, cross_encoder: Any, anchor: str, positive: str,
         output_format: str, output_scores: bool, *, overrides: str | Path | None, cache_dir: str | Path | None,
         verbose: bool, return_pool: bool) -> Any:
    from .curate.overrides import read_overrides
    from .curate.rules import CurateParams, curate
    from .engines.local import MiningParams, mine
    from .progress import no_progress, terminal_progress

    params = MiningParams.from_settings(values)
    curate_params = CurateParams.from_settings(values)
    verdicts = _self_excluded(collection, read_overrides(overrides, collection) if overrides else None)
    if values["teacher"] == "cross-encoder" and not isinstance(cross_encoder, (str, Path)):
        teacher = _model("cross-encoder", cross_encoder, None)
    elif values["teacher"] == "bi-encoder" and values["teacher_model"] == values["model"]:
        teacher = encoder
    else:
        teacher = None
    progress = terminal_progress() if verbose else no_progress
    pool = mine(collection, params, cache_dir=cache_dir, encoder=encoder, teacher=teacher, progress=progress)
    curation = curate(pool.frame, curate_params, verdicts)
    out = _output(pool, curation, output_format, output_scores, anchor, positive)
    if verbose:
        for line in (*collection.problems, *pool.stats.sentences(), *curation.summary()):
            print(line)
    if return_pool:
        return HardNegatives(out, _labelled_pool(pool, curation), curation.summary())
    return out


def _self_excluded(collection: Any, given: Any) -> Any:
    """The verdicts to curate with: `given` (a person's) and, as sentence-transformers drops an anchor's own text
    from its candidates, a bad_negative verdict on every document whose text is its query's."""
    from .curate.overrides import Override, Overrides
    from .data import text_id

    entries = list(given.entries) if given is not None else []
    docs = collection.doc_index
    for query_id, text in zip(collection.query_ids, collection.query_texts):
        doc_id = text_id(text, "d")
        if doc_id in docs and doc_id not in collection.positives[query_id] and (
                given is None or given.get(query_id, doc_id) is None):
            entries.append(Override(query_id, doc_id, "bad_negative", "the anchor's own text"))
    return Overrides(tuple(entries), given.path if given is not None else None, given.lines if given else 0)


# Their output format -> the export table it is cut from.
_TABLES = {"triplet": "triplet", "n-tuple": "ntuple", "labeled-pair": "labeled_pair", "labeled-list": "flag"}


def _output(pool: Any, curation: Any, output_format: str, scores: bool, anchor: str, positive: str) -> Any:
    """The Dataset sentence-transformers' function returns for `output_format`, with its column names: the input's
    anchor and positive columns, then negative / negative_1..n / label / labels, and scores / score."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    from .export.formats import export_tables

    name = "ntuple_scores" if output_format == "n-tuple" and scores else _TABLES[output_format]
    table = export_tables(pool, curation, name, scores=scores)[name]
    if output_format == "labeled-list":
        table = _labeled_list(table, scores)
    renamed = {"anchor": anchor, "positive": positive, **({"label": "scores"} if name == "ntuple_scores" else {})}
    return Dataset(InMemoryTable(table.rename_columns([renamed.get(c, c) for c in table.column_names])))


def _labeled_list(flag: Any, scores: bool) -> Any:
    """One row per (anchor, positive) of queries with negatives: the positive and the negatives as one list, with
    their labels (1, 0, ...) or their scores."""
    import pyarrow as pa

    anchors, documents, values = [], [], []
    columns = (flag.column(c).to_pylist() for c in ("query", "pos", "neg", "pos_scores", "neg_scores"))
    for query, pos, neg, pos_scores, neg_scores in zip(*columns):
        for text, score in zip(pos, pos_scores):
            anchors.append(query)
            documents.append([text, *neg])
            values.append([score, *neg_scores] if scores else [1] + [0] * len(neg))
    kind = pa.list_(pa.float32()) if scores else pa.list_(pa.int64())
    return pa.table({"anchor": pa.array(anchors, pa.string()), "positive": pa.array(documents, pa.list_(pa.string())),
                     "scores" if scores else "labels": pa.array(values, kind)})


def _labelled_pool(pool: Any, curation: Any) -> pd.DataFrame:
    """The pool table with its labels and reasons (the `pool` export) and the query and document texts."""
    from .export.formats import export_tables

    frame = export_tables(pool, curation, "pool")["pool"].to_pandas()
    c = pool.collection
    texts = {"query": (frame["query_id"], c.query_index, c.query_texts),
             "document": (frame["doc_id"], c.doc_index, c.doc_texts)}
    for column, (ids, index, values) in texts.items():
        frame.insert(3 if column == "document" else 1, column, [values[index[i]] for i in ids])
    return frame

"""Stage 8b, evaluate: nDCG@k, Recall@k and MRR@k of a bi-encoder on a labelled split, through hnm's embedding cache.

The figures are those of sentence-transformers' InformationRetrievalEvaluator (the reference of the proof protocol,
/work/shared/reference/finetune_protocol.py), computed the same way:

- every document of the corpus is a candidate; a query is scored when it has at least one relevant document;
- the ranking is by cosine similarity, ties broken by ascending document id (string order), top max(k) kept;
- relevance is binary; nDCG@k's ideal DCG puts all the query's relevant documents first (min(|relevant|, k) ones);
  Recall@k divides by |relevant|; MRR@k is 1/rank of the first relevant document within k, else 0;
- every figure is the mean over the scored queries.

Text: the protocol gives the evaluator `(title or "") + " " + text` for a BEIR document and the query text as it is
in queries.jsonl, while `load_beir` strips both and leaves empty documents out. For WordPiece models such as MiniLM
the outer whitespace does not change a token, but for other tokenizers it can, and a left-out empty document can
still rank in a top 10. So `load_eval_collection` reads a BEIR folder with `load_collection` (its checks and qrels
reading) and then takes the texts and the corpus as the protocol builds them. Left different, and counted in
`Collection.problems`: qrels rows naming documents missing from the corpus (the evaluator counts them in the ideal
DCG and in Recall's denominator; hnm drops them) and queries with empty text.

Embeddings are L2-normalised and cached in float16 (dense.encode), so scores can differ from the evaluator's float32
cosines by ~1e-3 and could reorder near-ties; measured on SciFact test with MiniLM, the figures equal the evaluator's
to 1e-6 (nDCG@10 0.64508, Recall@100 0.925, MRR@10 0.60472; tests/test_evaluate.py, slow).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Collection, load_collection
from ..errors import SettingsError
from ..models.loading import LoadedModel, load_bi_encoder
from ..progress import Progress, no_progress
from ..settings import setting
from ..wording import counted

__all__ = ["EvalResult", "evaluate", "load_eval_collection", "HEADLINE"]

HEADLINE: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10")
"""The figures the CLI prints and the proof loop compares."""


@dataclass(frozen=True)
class EvalResult:
    """Retrieval quality of one model on one collection.

    `metrics` maps "ndcg@k", "recall@k" and "mrr@k" (each k of `k_values`) to the mean over queries; `per_query`
    maps the same names to arrays aligned with `query_ids`.
    """

    model: str
    fingerprint: str
    collection: str
    source: str
    n_queries: int
    n_docs: int
    k_values: tuple[int, ...]
    metrics: dict[str, float]
    per_query: dict[str, np.ndarray]
    query_ids: tuple[str, ...]
    seconds: float

    def table(self) -> str:
        """The headline figures (those whose k was asked for), one per line, aligned."""
        names = [name for name in HEADLINE if name in self.metrics] or list(self.metrics)
        width = max(len(name) for name in names)
        lines = [f"{self.model} on {self.collection}: {counted(self.n_queries, 'query', 'queries')}, "
                 f"{counted(self.n_docs, 'document')}"]
        lines += [f"  {name:<{width}}  {self.metrics[name]:.4f}" for name in names]
        return "\n".join(lines)

    def to_json(self) -> str:
        """Everything but the per-query arrays, as JSON."""
        summary: dict[str, Any] = {key: getattr(self, key) for key in
                                   ("model", "fingerprint", "collection", "source", "n_queries", "n_docs", "seconds")}
        summary["k_values"] = list(self.k_values)
        summary["metrics"] = self.metrics
        return json.dumps(summary, indent=2)


def load_eval_collection(path: str | Path, *, split: str = setting("split").default) -> Collection:
    """`load_collection(path, split=split)`, with a BEIR folder's texts and corpus as the reference protocol builds
    them (see the module docstring). Pairs and FlagEmbedding files are returned as loaded."""
    collection = load_collection(path, split=split)
    folder = Path(path)
    if not folder.is_dir():
        return collection
    corpus: dict[str, str] = {}
    for record in _records(folder / "corpus.jsonl"):
        # A repeated _id has the same text (load_beir refuses it otherwise), so the first one stands for both.
        corpus.setdefault(_beir_id(record), (record.get("title") or "") + " " + record["text"])
    queries = {_beir_id(record): record["text"] for record in _records(folder / "queries.jsonl")}
    problems = collection.problems
    if len(corpus) > len(collection.doc_ids):
        problems += (f"corpus.jsonl: evaluation scores the documents with empty text all the same "
                     f"({len(corpus) - len(collection.doc_ids):,}), as InformationRetrievalEvaluator does.",)
    return replace(collection, doc_ids=tuple(corpus), doc_texts=tuple(corpus.values()),
                   query_texts=tuple(queries[qid] for qid in collection.query_ids), problems=problems)


def _records(path: Path):
    """The JSON objects of a JSONL file that load_beir has already checked."""
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _beir_id(record: dict[str, Any]) -> str:
    """The _id as load_beir reads it (numbers as text, outer whitespace dropped), so it matches the qrels."""
    return str(record["_id"]).strip()


def evaluate(
    model: str | LoadedModel,
    collection: Collection,
    *,
    k_values: Sequence[int] = (10, 100),
    precision: str = setting("eval_precision").default,
    batch_size: int = setting("batch_size").default,
    cache_dir: str | Path | None = None,
    progress: Progress = no_progress,
) -> EvalResult:
    """nDCG@k, Recall@k and MRR@k of `model` retrieving `collection.doc_texts` for `collection.query_texts`.

    model: a sentence-transformers name or folder (loaded here in `precision`), or a LoadedModel.
    collection: usually from `load_eval_collection(path, split="test")`; its positives are the relevant documents.
    k_values: the cut-offs; every metric is computed at each.
    precision: "fp32" (the protocol's), "bf16" or "auto", for a model given by name.
    batch_size: encoding batch size (the protocol's evaluator uses 64).
    cache_dir: embedding cache (default $HNM_CACHE_DIR or ~/.cache/hnm); a fine-tuned folder has its own key.
    """
    ks = tuple(sorted(set(k_values)))
    if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise SettingsError(f"k_values {list(k_values)} must be whole numbers of at least 1. Fix: e.g. k_values=(10, 100)")
    from ..retrieve.dense import encode

    started = time.perf_counter()
    ref = model if isinstance(model, LoadedModel) else load_bi_encoder(model, precision=precision)
    docs = encode(ref, collection.doc_texts, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
                  stage="encode documents")
    queries = encode(ref, collection.query_texts, batch_size=batch_size, cache_dir=cache_dir, progress=progress,
                     stage="encode queries")
    ranked = _rank(queries, docs, collection.doc_ids, min(ks[-1], len(collection.doc_ids)), progress)
    index = collection.doc_index
    relevant = [{index[d] for d in collection.positives[qid]} for qid in collection.query_ids]
    per_query = _metrics(ranked, relevant, ks)
    return EvalResult(
        model=ref.name,
        fingerprint=ref.fingerprint,
        collection=collection.name,
        source=collection.source,
        n_queries=len(collection.query_ids),
        n_docs=len(collection.doc_ids),
        k_values=ks,
        metrics={name: float(values.mean()) for name, values in per_query.items()},
        per_query=per_query,
        query_ids=collection.query_ids,
        seconds=round(time.perf_counter() - started, 3),
    )


def _rank(queries: np.ndarray, docs: np.ndarray, doc_ids: Sequence[str], k: int, progress: Progress,
          chunk: int = 256) -> list[np.ndarray]:
    """Per query, the indices of its top-k documents by (-cosine, doc id): the evaluator's total order, so a tie at
    the k-th score keeps the documents with the smallest ids."""
    id_rank = np.empty(len(doc_ids), dtype=np.int64)
    id_rank[np.argsort(np.asarray(doc_ids, dtype=object), kind="stable")] = np.arange(len(doc_ids))
    doc_matrix = np.asarray(docs, dtype=np.float32)
    n = len(doc_ids)
    out: list[np.ndarray] = []
    progress("rank", 0, len(queries))
    for start in range(0, len(queries), chunk):
        scores = np.asarray(queries[start:start + chunk], dtype=np.float32) @ doc_matrix.T
        kth = np.partition(scores, n - k, axis=1)[:, n - k]
        for row, threshold in zip(scores, kth):
            candidates = np.flatnonzero(row >= threshold)  # every tie at the k-th score is a candidate
            order = np.lexsort((id_rank[candidates], -row[candidates]))[:k]
            out.append(candidates[order])
        progress("rank", min(start + chunk, len(queries)), len(queries))
    return out


def _metrics(ranked: list[np.ndarray], relevant: list[set[int]], ks: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per-query figures; every query of a Collection has at least one relevant document."""
    discount = 1.0 / np.log2(np.arange(2, ks[-1] + 2))
    out = {f"{name}@{k}": np.zeros(len(ranked)) for k in ks for name in ("ndcg", "recall", "mrr")}
    for q, (top, rel) in enumerate(zip(ranked, relevant)):
        hits = np.fromiter((d in rel for d in top), dtype=bool, count=len(top))
        first = int(np.argmax(hits)) if hits.any() else None
        for k in ks:
            ideal = discount[: min(len(rel), k)].sum()
            out[f"ndcg@{k}"][q] = discount[: min(k, len(hits))][hits[:k]].sum() / ideal
            out[f"recall@{k}"][q] = hits[:k].sum() / len(rel)
            out[f"mrr@{k}"][q] = 1.0 / (first + 1) if first is not None and first < k else 0.0
    return out

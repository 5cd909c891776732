"""evaluate: figures equal to sentence-transformers' InformationRetrievalEvaluator fed exactly as the reference
protocol (finetune_protocol.py) feeds it, on inline BEIR folders with edge rows, the sample and SciFact; the metric
arithmetic against hand-computed values; the cache; the CLI."""

from __future__ import annotations

import collections
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hnm_core.cli import main
from hnm_core.data import load_collection
from hnm_core.errors import DataError, SettingsError
from hnm_core.prove.evaluate import _metrics, evaluate, load_eval_collection
from hnm_core.models.loading import load_bi_encoder

from .conftest import SHARED_DATASETS

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
KS = (1, 3, 5, 10, 100)


def write_beir(folder: Path, docs: list[dict], queries: list[dict], qrels: list[tuple[str, str, int]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in (("corpus.jsonl", docs), ("queries.jsonl", queries)):
        (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                   encoding="utf-8")
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels),
                                      encoding="utf-8")
    return folder


def reference_figures(model_dir: str, folder: Path, ks=KS) -> dict[str, float]:
    """finetune_protocol.py's evaluator, built by its own code (corpus, queries and qrels readers), at every k."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    corpus = {}
    for line in open(folder / "corpus.jsonl", encoding="utf-8"):
        r = json.loads(line)
        corpus[r["_id"]] = (r.get("title") or "") + " " + r["text"]
    queries = {json.loads(line)["_id"]: json.loads(line)["text"] for line in open(folder / "queries.jsonl",
                                                                                  encoding="utf-8")}
    test = collections.defaultdict(set)
    with open(folder / "qrels.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            a, b, s = line.rstrip("\n").split("\t")[:3]
            if float(s) > 0:
                test[a].add(b)
    ks = list(ks)
    evaluator = InformationRetrievalEvaluator({q: queries[q] for q in test}, corpus, test, mrr_at_k=ks,
                                              ndcg_at_k=ks, accuracy_at_k=[1], precision_recall_at_k=ks,
                                              map_at_k=[10], batch_size=64, write_csv=False)
    out = evaluator(SentenceTransformer(model_dir, device="cpu"))
    return {key.split("_", 1)[1]: value for key, value in out.items()
            if key.split("_", 1)[1].split("@")[0] in ("ndcg", "recall", "mrr")}


def assert_same_figures(ours: dict[str, float], reference: dict[str, float], tol: float = 1e-6) -> None:
    assert ours.keys() == reference.keys()
    for name in ours:
        assert ours[name] == pytest.approx(reference[name], abs=tol), name


@pytest.fixture
def edge_folder(tmp_path) -> Path:
    """Edge rows: a document without title and one with an empty text (the protocol encodes " " and it can rank),
    two documents with the same text under ids out of file order (an exact tie, broken by id), a query with two
    positives, a query with outer whitespace, a qrels row scored 0 and a query without any positive."""
    docs = [
        {"_id": "d1", "title": "Attention", "text": "Attention lets a transformer weigh every token."},
        {"_id": "d9", "title": "", "text": "A bank lends money and takes deposits."},
        {"_id": "d3", "text": "Pythons are large constricting snakes."},
        {"_id": "d2", "title": "Cells", "text": "A biological cell is the basic unit of life."},
        {"_id": "d10", "title": "Cells", "text": "A biological cell is the basic unit of life."},
        {"_id": "d5", "title": "Python", "text": "Python is a programming language with dynamic typing."},
        {"_id": "d6", "title": "", "text": ""},
        {"_id": "d7", "title": "Transformers", "text": "Multi-head attention runs attention functions in parallel."},
    ]
    queries = [{"_id": "q1", "text": "how does attention work"}, {"_id": "q2", "text": "  what is a cell  "},
               {"_id": "q3", "text": "python snakes"}, {"_id": "q4", "text": "where to borrow money"},
               {"_id": "q5", "text": "unlabelled query"}]
    qrels = [("q1", "d1", 1), ("q1", "d7", 2), ("q2", "d10", 1), ("q3", "d3", 1), ("q3", "d5", 0), ("q4", "d9", 1)]
    return write_beir(tmp_path / "beir", docs, queries, qrels)


def test_figures_equal_information_retrieval_evaluator_on_edge_rows(edge_folder, tiny_bi_encoder_dir, tmp_path):
    collection = load_eval_collection(edge_folder)
    assert collection.doc_ids == ("d1", "d9", "d3", "d2", "d10", "d5", "d6", "d7")
    assert collection.doc_texts[1:3] == (" A bank lends money and takes deposits.", " Pythons are large constricting snakes.")
    assert collection.doc_texts[6] == " "  # left out by load_beir, scored by the protocol
    assert collection.query_ids == ("q1", "q2", "q3", "q4")
    assert collection.query_texts[1] == "  what is a cell  "
    assert collection.positives == load_collection(edge_folder).positives

    result = evaluate(str(tiny_bi_encoder_dir), collection, k_values=KS, cache_dir=tmp_path / "cache")
    assert_same_figures(result.metrics, reference_figures(str(tiny_bi_encoder_dir), edge_folder))
    # d2 and d10 embed identically and tie; the tie goes to the smaller id as a string, "d10", one place above "d2".
    rank = 1 / result.per_query["mrr@10"][1]
    swapped = evaluate(str(tiny_bi_encoder_dir), replace(collection, positives={**collection.positives, "q2": ("d2",)}),
                       cache_dir=tmp_path / "cache")
    assert 1 / swapped.per_query["mrr@10"][1] == rank + 1
    assert (result.n_queries, result.n_docs, result.k_values) == (4, 8, KS)
    assert set(result.per_query) == set(result.metrics)
    assert all(len(values) == 4 for values in result.per_query.values())
    assert result.metrics["ndcg@10"] == pytest.approx(result.per_query["ndcg@10"].mean())


def test_a_cached_run_never_loads_the_model_and_a_changed_folder_is_recomputed(edge_folder, tiny_bi_encoder_dir,
                                                                               tmp_path):
    import shutil

    collection = load_eval_collection(edge_folder)
    first = evaluate(str(tiny_bi_encoder_dir), collection, cache_dir=tmp_path / "cache")
    again = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    second = evaluate(again, collection, cache_dir=tmp_path / "cache")
    assert not again.loaded  # both the corpus and the queries came from the cache
    assert second.metrics == first.metrics and second.fingerprint == first.fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(tiny_bi_encoder_dir, copy)
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(copy / "model.safetensors"))
    name = next(k for k in tensors if "embeddings.word_embeddings" in k)
    tensors[name] = tensors[name][::-1].copy()  # other weights: a new fingerprint, new embeddings
    save_file(tensors, str(copy / "model.safetensors"), metadata={"format": "pt"})
    changed = load_bi_encoder(str(copy), precision="fp32")
    third = evaluate(changed, collection, cache_dir=tmp_path / "cache")
    assert changed.loaded and third.fingerprint != first.fingerprint
    assert_same_figures(third.metrics, reference_figures(str(copy), edge_folder, ks=(10, 100)))


@pytest.mark.parametrize(
    ("ranked", "relevant", "k", "ndcg", "recall", "mrr"),
    [
        ([3, 0, 7], {0, 5}, 10, (1 / math.log2(3)) / (1 + 1 / math.log2(3)), 0.5, 0.5),
        ([0, 5, 7], {0, 5}, 10, 1.0, 1.0, 1.0),
        ([7, 8, 0], {0}, 2, 0.0, 0.0, 0.0),  # the hit is below the cut-off
        ([7, 0], {0, 1, 2, 3}, 1, 0.0, 0.0, 0.0),
        ([0, 7], {0, 1, 2, 3}, 1, 1.0, 0.25, 1.0),  # IDCG@1 counts one of the four positives
        ([9, 8, 2], {2}, 3, 0.5, 1.0, 1 / 3),
    ],
)
def test_metric_arithmetic(ranked, relevant, k, ndcg, recall, mrr):
    out = _metrics([np.array(ranked)], [relevant], (k,))
    assert out[f"ndcg@{k}"][0] == pytest.approx(ndcg)
    assert out[f"recall@{k}"][0] == pytest.approx(recall)
    assert out[f"mrr@{k}"][0] == pytest.approx(mrr)


def test_pairs_files_are_evaluated_as_loaded_and_bad_input_is_refused(tiny_bi_encoder_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": q, "positive": p}) + "\n" for q, p in
                             [("what is a cell", "A cell is the unit of life."), ("bank loans", "Banks lend money."),
                              ("python", "Python is a language.")]), encoding="utf-8")
    collection = load_eval_collection(pairs)
    assert collection == load_collection(pairs)
    result = evaluate(str(tiny_bi_encoder_dir), collection, k_values=(1,), cache_dir=tmp_path / "cache")
    assert set(result.metrics) == {"ndcg@1", "recall@1", "mrr@1"} and result.n_docs == 3
    with pytest.raises(SettingsError, match="k_values"):
        evaluate(str(tiny_bi_encoder_dir), collection, k_values=(0, 10))
    with pytest.raises(DataError, match="split 'validation'"):  # the sample has train, dev and test
        load_eval_collection(SAMPLE, split="validation")


def test_cli_eval_prints_a_table_or_json(edge_folder, tiny_bi_encoder_dir, tmp_path, capsys):
    flags = ["--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(["eval", str(tiny_bi_encoder_dir), str(edge_folder), *flags]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == ["corpus.jsonl: 1 document with empty text skipped (d6 on line 7).",
                       "qrels.tsv: 1 row with score <= 0 ignored (not positives).",
                       "qrels.tsv: no positive (score > 0) for 1 query of queries.jsonl (q5); left out (queries of "
                       "other splits, or unlabelled).",
                       "corpus.jsonl: evaluation scores the documents with empty text all the same (1), as "
                       "InformationRetrievalEvaluator does."]
    table = out[4:]
    assert table[0].endswith("on beir: 4 queries, 8 documents")
    assert [line.split()[0] for line in table[1:]] == ["ndcg@10", "recall@100", "mrr@10"]
    assert main(["eval", str(tiny_bi_encoder_dir), str(edge_folder), "--json", *flags]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_queries"] == 4 and set(report["metrics"]) >= {"ndcg@10", "recall@100", "mrr@10"}
    assert f"{report['metrics']['ndcg@10']:.4f}" == table[1].split()[1]
    assert main(["eval", str(tiny_bi_encoder_dir), str(edge_folder), "--split", "dev", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hnm eval: error:") and "split 'dev'" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_minilm_on_the_sample_equals_the_evaluator(session_cache):
    from hnm_core.models.loading import resolve_model_path

    result = evaluate("all-MiniLM-L6-v2", load_eval_collection(SAMPLE), k_values=KS, cache_dir=session_cache)
    assert_same_figures(result.metrics, reference_figures(resolve_model_path("all-MiniLM-L6-v2"), SAMPLE), tol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATASETS / "scifact").is_dir(), reason="needs the SciFact dataset")
def test_minilm_zero_shot_on_scifact_is_the_issues_figure(session_cache):
    """Issue 8's zero-shot row, measured with finetune_protocol.py: nDCG@10 0.6451 on SciFact test."""
    result = evaluate("all-MiniLM-L6-v2", load_eval_collection(SHARED_DATASETS / "scifact"), cache_dir=session_cache)
    assert result.n_queries == 300 and result.n_docs == 5183
    assert round(result.metrics["ndcg@10"], 4) == 0.6451

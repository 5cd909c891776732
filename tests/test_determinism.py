"""Same command, same bytes: embeddings and exports do not depend on how the work was sliced and saved (the clock
and the machine's load decide that), on where a run was killed and resumed, or on a damaged slice computed again.
The Ray engine's side of the promise is in test_engine_ray.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hnm_core import cache as cache_module
from hnm_core.cache import _PART
from hnm_core.cli import main
from hnm_core.retrieve.dense import encode
from hnm_core.errors import CacheWarning
from hnm_core.manifest import comparable_files
from hnm_core.models.loading import load_bi_encoder

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
# Texts of many lengths, all shorter than the tiny model's 64 tokens, so batches pad differently: encoded beside
# other companions (as when each slice was sorted on its own, before batches were fixed), 5 of these values round
# differently in bf16.
TEXTS = [" ".join(f"w{(i * 7 + j) % 97}" for j in range(1 + (i * 13) % 17)) for i in range(203)]
BATCH = 8


@pytest.fixture(scope="module")
def model(tiny_bi_encoder_dir):
    # bf16, where a batch's padding changes the rounding most
    return load_bi_encoder(str(tiny_bi_encoder_dir), precision="bf16")


def pacing(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Slices as a busy machine makes them (one batch each: every batch takes 'too long') or as one idle run."""
    if how == "per-batch":
        monkeypatch.setattr(cache_module, "SLICE_SECONDS", 0.0)
    elif how == "one-slice":
        monkeypatch.setattr(cache_module, "SLICE_ROWS", 10**6)
        monkeypatch.setattr(cache_module, "FIRST_SLICE_ROWS", 10**6)


def killed_at(done_at: int):
    """A progress callback that stops the run (as Ctrl-C or the studio's Stop) once `done_at` texts are done."""
    def progress(stage: str, done: int, total: int) -> None:
        if done >= done_at:
            raise KeyboardInterrupt

    return progress


def parts(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.glob("embeddings/*/part-*.npy") if _PART.fullmatch(p.name))


@pytest.fixture(scope="module")
def clean(model, tmp_path_factory) -> np.ndarray:
    return np.array(encode(model, TEXTS, batch_size=BATCH, cache_dir=tmp_path_factory.mktemp("clean")))


@pytest.mark.parametrize("how", ["per-batch", "one-slice"])
def test_embeddings_do_not_depend_on_the_slicing(model, clean, tmp_path, monkeypatch, how):
    pacing(monkeypatch, how)
    got = encode(model, TEXTS, batch_size=BATCH, cache_dir=tmp_path)
    np.testing.assert_array_equal(np.asarray(got), clean)


def test_embeddings_resumed_after_kills_and_damage_are_bit_identical(model, clean, tmp_path, monkeypatch):
    pacing(monkeypatch, "per-batch")  # many saved slices to resume from and to damage
    for done_at in (5, 60, 130):  # in a first batch, on a slice's end, in the middle
        with pytest.raises(KeyboardInterrupt):
            encode(model, TEXTS, batch_size=BATCH, cache_dir=tmp_path, progress=killed_at(done_at))
    saved = parts(tmp_path)
    assert len(saved) >= 10
    data = bytearray(saved[3].read_bytes())
    data[-40:] = bytes(b ^ 0xFF for b in data[-40:])  # flip bytes of one saved slice's vectors
    saved[3].write_bytes(bytes(data))
    monkeypatch.setattr(cache_module, "SLICE_SECONDS", 5.0)  # the resuming run paces itself otherwise
    with pytest.warns(CacheWarning, match="checksum mismatch"):
        got = encode(model, TEXTS, batch_size=BATCH, cache_dir=tmp_path)
    np.testing.assert_array_equal(np.asarray(got), clean)


def test_another_batch_size_is_another_cache_entry(model, clean, tmp_path):
    """Batches decide the last bits, so the batch size is part of the key: never served from the other's entry."""
    other = np.asarray(encode(model, TEXTS, batch_size=BATCH * 2, cache_dir=tmp_path))
    encode(model, TEXTS, batch_size=BATCH, cache_dir=tmp_path)
    assert len(list((tmp_path / "embeddings").iterdir())) == 2
    np.testing.assert_allclose(other, clean, atol=2e-2)
    metas = [json.loads(p.read_text()) for p in (tmp_path / "embeddings").glob("*/meta.json")]
    assert sorted(m["batch_size"] for m in metas) == [BATCH, BATCH * 2]


@pytest.mark.parametrize("teacher", ["bi-encoder", "cross-encoder"])
def test_two_mine_runs_one_on_a_busy_machine_export_the_same_bytes(tiny_bi_encoder_dir, tiny_cross_encoder_dir,
                                                                    tmp_path, monkeypatch, teacher):
    flags = ["--model", str(tiny_bi_encoder_dir), "--precision", "bf16", "--batch-size", "8", "--max-seq-length", "64",
             "--quiet", "--teacher", teacher, "--teacher-model",
             str(tiny_cross_encoder_dir if teacher == "cross-encoder" else tiny_bi_encoder_dir),
             "--formats", "triplet,ntuple_scores,flag,pool"]
    assert main(["mine", str(SAMPLE), "--out", str(tmp_path / "idle"), "--cache-dir", str(tmp_path / "c1"),
                 *flags]) == 0
    pacing(monkeypatch, "per-batch")
    assert main(["mine", str(SAMPLE), "--out", str(tmp_path / "busy"), "--cache-dir", str(tmp_path / "c2"),
                 *flags]) == 0
    idle, busy = comparable_files(tmp_path / "idle"), comparable_files(tmp_path / "busy")
    assert idle.keys() == busy.keys() and "pool/pool.parquet" in idle
    for name in idle:
        assert idle[name] == busy[name], name

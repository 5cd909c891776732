"""train: real fine-tunes of the tiny bi-encoder on an export made by the real pipeline (sample_data -> mine ->
curate -> export), checked against the reference protocol's own trainer call, plus the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hnm_core.cli import main
from hnm_core.curate.rules import CurateParams, curate
from hnm_core.data import load_collection
from hnm_core.errors import CacheWarning, DataError, ExportError, SettingsError
from hnm_core.export.formats import export
from hnm_core.models.loading import load_bi_encoder
from hnm_core.engines.local import mine
from hnm_core.settings import validate
from hnm_core.prove.train import train_model, training_file

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
# Small batches so the ~60-row export makes several optimiser steps; a high lr so one step visibly moves weights;
# fp32, the reference protocol's precision (the default, auto, is bf16 on a CPU that has it).
FAST = {"batch_size": 16, "lr": 1e-3, "device": "cpu", "precision": "fp32"}


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, tiny_bi_encoder_dir) -> Path:
    """sample_data mined with the tiny model as miner and teacher, exported as ntuple and ntuple_scores (no
    false-negative rule: the random model's scores would leave few rows)."""
    root = tmp_path_factory.mktemp("train-export")
    values = validate({"model": str(tiny_bi_encoder_dir), "teacher_model": str(tiny_bi_encoder_dir),
                       "precision": "fp32", "top_k": 20, "negatives": 2, "relative_margin": None})
    pool = mine(load_collection(SAMPLE), values, cache_dir=root / "cache")
    curation = curate(pool.frame, CurateParams.from_settings(values))
    export(pool, curation, root / "export", formats="ntuple,ntuple_scores")
    export(pool, curation, root / "export-jsonl", formats="ntuple,ntuple_scores", file_type="jsonl")
    return root / "export"


def weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def test_trains_a_loadable_model_that_moved_and_writes_the_manifest(export_dir, tiny_bi_encoder_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    calls = []
    result = train_model(export_dir, tmp_path / "model", model=str(tiny_bi_encoder_dir), seed=3,
                         progress=lambda stage, done, total: calls.append((stage, done, total)), **FAST)
    rows = pq.read_metadata(export_dir / "ntuple.parquet").num_rows
    assert result.rows == rows > 32 and result.steps == -(-rows // 16)
    assert calls[0] == ("train", 0, result.steps) and calls[-1] == ("train", result.steps, result.steps)
    assert np.isfinite(result.training_loss)

    model = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    assert model.encode(["a query"]).shape == (1, 32)
    before, after = weights(tiny_bi_encoder_dir), weights(tmp_path / "model")
    assert before.keys() == after.keys()
    assert any(not np.array_equal(before[k], after[k]) for k in before)

    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(result.manifest))
    export_manifest = json.loads((export_dir / "manifest.json").read_text())
    assert manifest["export"]["file"] == str((export_dir / "ntuple.parquet").resolve())
    assert manifest["export"]["fingerprints"] == export_manifest["fingerprints"]
    assert manifest["export"]["settings"]["negatives"] == 2
    assert manifest["settings"] == {
        "model": str(tiny_bi_encoder_dir), "loss": "mnrl", "loss_class": "MultipleNegativesRankingLoss",
        "epochs": 1, "batch_size": 16, "lr": 1e-3, "warmup_ratio": 0.1, "seed": 3, "max_pairs": None,
        "precision": "fp32", "batch_sampler": "no_duplicates", "max_seq_length": 64,
        "columns": ["anchor", "positive", "negative_1", "negative_2"]}
    assert (manifest["rows"], manifest["rows_in_file"], manifest["steps"]) == (rows, rows, result.steps)
    assert {"sentence-transformers", "torch", "transformers", "datasets"} <= set(manifest["versions"])
    assert manifest["base_model"]["fingerprint"] and manifest["seconds"] >= 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the temp folder was renamed, nothing left

    # The manifest (times, paths) is not part of the model's cache key: the same weights share embeddings.
    fingerprint = load_bi_encoder(str(tmp_path / "model")).fingerprint
    (tmp_path / "model" / "manifest.json").write_text("{}")
    assert load_bi_encoder(str(tmp_path / "model")).fingerprint == fingerprint
    assert fingerprint != load_bi_encoder(str(tiny_bi_encoder_dir)).fingerprint


def test_equals_the_reference_protocols_trainer_and_the_seed_matters(export_dir, tiny_bi_encoder_dir, tmp_path):
    """finetune_protocol.py's `file:` arm, reduced to its training call (same file, arguments and loss), gives the
    same weights as train_model with the same seed, bit for bit; another seed gives other weights."""
    import tempfile

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer import losses

    path = export_dir / "ntuple.parquet"
    model = SentenceTransformer(str(tiny_bi_encoder_dir), device="cpu")
    data = Dataset.from_parquet(str(path), cache_dir=str(tmp_path / "hf"))
    keep = ["anchor", "positive"] + sorted((c for c in data.column_names if c.startswith("negative")),
                                           key=lambda c: int(c.split("_")[-1]))
    args = SentenceTransformerTrainingArguments(output_dir=tempfile.mkdtemp(dir=tmp_path), num_train_epochs=1,
                                                per_device_train_batch_size=FAST["batch_size"],
                                                learning_rate=FAST["lr"], warmup_ratio=0.1, seed=0,
                                                save_strategy="no", report_to=[], batch_sampler="no_duplicates",
                                                logging_steps=1000, use_cpu=True)
    SentenceTransformerTrainer(model=model, args=args, train_dataset=data.select_columns(keep),
                               loss=losses.MultipleNegativesRankingLoss(model)).train()
    reference = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    for seed in (0, 1):
        train_model(export_dir, tmp_path / f"seed{seed}", model=str(tiny_bi_encoder_dir), seed=seed, **FAST)
    same = SentenceTransformer(str(tmp_path / "seed0"), device="cpu").state_dict()
    other = SentenceTransformer(str(tmp_path / "seed1"), device="cpu").state_dict()
    assert reference.keys() == same.keys() == other.keys()
    assert all(np.array_equal(reference[k], same[k].numpy()) for k in reference)
    assert any(not np.array_equal(reference[k], other[k].numpy()) for k in reference)


@pytest.mark.parametrize(("loss", "file_type", "precision"),
                         [("cached_mnrl", "parquet", "fp32"), ("margin_mse", "jsonl", "bf16")])
def test_other_losses_file_types_and_bf16(export_dir, tiny_bi_encoder_dir, tmp_path, loss, file_type, precision):
    folder = export_dir if file_type == "parquet" else export_dir.parent / "export-jsonl"
    result = train_model(folder, tmp_path / "m", model=str(tiny_bi_encoder_dir), loss=loss,
                         **{**FAST, "precision": precision})
    fmt = "ntuple_scores" if loss == "margin_mse" else "ntuple"
    assert result.manifest["export"]["file"].endswith(f"{fmt}.{file_type}")
    assert result.rows == pq.read_metadata(export_dir / f"{fmt}.parquet").num_rows
    assert result.manifest["settings"]["columns"][-1] == ("label" if loss == "margin_mse" else "negative_2")
    assert result.manifest["settings"]["precision"] == precision
    assert np.isfinite(result.training_loss)
    before, after = weights(tiny_bi_encoder_dir), weights(tmp_path / "m")
    assert any(not np.array_equal(before[k], after[k]) for k in before)


def test_max_pairs_takes_a_seeded_subset_and_one_file_can_be_given(export_dir, tiny_bi_encoder_dir, tmp_path):
    path = export_dir / "ntuple.parquet"
    result = train_model(path, tmp_path / "m", model=str(tiny_bi_encoder_dir), max_pairs=20, **FAST)
    assert (result.rows, result.steps) == (20, 2)
    assert result.manifest["rows_in_file"] == pq.read_metadata(path).num_rows
    assert "manifest_blake2b" in result.manifest["export"]  # the file's folder is an export


def test_refusals_leave_nothing_behind(export_dir, tiny_bi_encoder_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for overwrite in (False, True):  # a folder hnm did not write is never written into, nor emptied
        with pytest.raises(ExportError, match="is not empty and has no .hnm-output.json"):
            train_model(export_dir, out, model=str(tiny_bi_encoder_dir), overwrite=overwrite, **FAST)
        assert [p.name for p in out.iterdir()] == ["keep.txt"]

    with pytest.raises(SettingsError, match="loss 'triplet' is not one of mnrl, cached_mnrl, margin_mse"):
        train_model(export_dir, tmp_path / "a", loss="triplet")
    with pytest.raises(SettingsError, match="warmup_ratio"):
        train_model(export_dir, tmp_path / "a", warmup_ratio=1.0)
    with pytest.raises(SettingsError, match="batch_size is 0"):
        train_model(export_dir, tmp_path / "a", batch_size=0)
    with pytest.raises(SettingsError, match="precision 'fp16' is not one of auto, fp32, bf16"):
        train_model(export_dir, tmp_path / "a", precision="fp16")
    with pytest.raises(DataError, match="has no ntuple.parquet or ntuple.jsonl"):
        training_file(tmp_path / "out")
    triplets = tmp_path / "triplet.parquet"
    pq.write_table(pa.table({"anchor": ["q"], "positive": ["p"], "negative": ["n"]}), triplets)
    with pytest.raises(DataError, match="needs anchor, positive, negative_1..negative_n"):
        train_model(triplets, tmp_path / "a")
    bad_scores = tmp_path / "ntuple_scores.parquet"
    pq.write_table(pa.table({"anchor": ["q"], "positive": ["p"], "negative_1": ["n"],
                             "label": [[0.9, float("nan")]]}), bad_scores)
    with pytest.raises(DataError, match="2 finite teacher scores"):
        train_model(bad_scores, tmp_path / "a", loss="margin_mse")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ntuple_scores.parquet", "out", "triplet.parquet"]

    # --overwrite replaces a model hnm trained there, and only its files
    model = tmp_path / "model"
    train_model(export_dir, model, model=str(tiny_bi_encoder_dir), max_pairs=8, **FAST)
    (model / "notes.txt").write_text("mine")
    pooling = next(p for p in model.iterdir() if p.is_dir() and p.name.endswith("Pooling"))
    (pooling / "notes.txt").write_text("mine too")  # in a folder hnm wrote: still not hnm's file
    with pytest.raises(ExportError, match="pass --overwrite"):
        train_model(export_dir, model, model=str(tiny_bi_encoder_dir), max_pairs=8, **FAST)
    train_model(export_dir, model, model=str(tiny_bi_encoder_dir), max_pairs=8, overwrite=True, **FAST)
    assert (model / "notes.txt").read_text() == "mine" and (model / "manifest.json").exists()
    assert (pooling / "notes.txt").read_text() == "mine too" and (pooling / "config.json").exists()


def test_cli_train_then_refuses_an_existing_folder(export_dir, tiny_bi_encoder_dir, tmp_path, capsys):
    out = tmp_path / "model"
    args = ["train", str(export_dir), "--out", str(out), "--train-model", str(tiny_bi_encoder_dir),
            "--train-batch-size", "8", "--max-pairs", "16", "--seed", "2", "--quiet"]
    assert main(args) == 0
    assert "Trained 2 steps on 16 rows" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["seed"] == 2 and manifest["command"].startswith("hnm ")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hnm train: error:") and "--overwrite" in err and len(err.splitlines()) == 1


class _Stop(Exception):
    pass


def test_a_stopped_training_resumes_to_the_same_weights(export_dir, tiny_bi_encoder_dir, tmp_path):
    """Stopped twice (each time one step after a checkpoint) and started again, a training ends with the weights of
    one that ran straight through, bit for bit; its loss is the whole run's; the checkpoints are gone at the end."""
    whole = train_model(export_dir, tmp_path / "whole", model=str(tiny_bi_encoder_dir), checkpoint_minutes=0,
                        cache_dir=tmp_path / "cache", **FAST)
    assert whole.steps >= 4 and not (tmp_path / "cache").exists()

    def stop_at(step):
        def progress(stage, done, total):
            if done == step:
                raise _Stop
        return progress

    trainings = tmp_path / "cache" / "trainings"
    every_step = {"checkpoint_minutes": 1e-9, "cache_dir": tmp_path / "cache"}
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "notes.txt").write_text("mine")  # a user's file in the cache folder
    before = {p.name: p.read_bytes() for p in export_dir.iterdir() if p.is_file()}
    for step in (2, 3):
        with pytest.raises(_Stop):
            train_model(export_dir, tmp_path / "resumed", model=str(tiny_bi_encoder_dir), progress=stop_at(step),
                        **every_step, **FAST)
        [folder] = trainings.iterdir()
        # the save of the step it stopped at never happened; the one before is complete and alone
        assert sorted(p.name for p in folder.glob("checkpoint-*")) == [f"checkpoint-{step - 1}"]
        assert json.loads((folder / f"checkpoint-{step - 1}" / "hnm-checkpoint.json").read_text())["step"] == step - 1
    calls = []
    resumed = train_model(export_dir, tmp_path / "resumed", model=str(tiny_bi_encoder_dir), **every_step, **FAST,
                          progress=lambda *call: calls.append(call))
    # the steps it did not train again are reported at once after the start, then each step it trains
    assert calls == [("train", done, whole.steps) for done in (0, *range(2, whole.steps + 1))]

    assert resumed.manifest["resumed_from_step"] == 2 and whole.manifest["resumed_from_step"] == 0
    assert resumed.steps == whole.steps
    assert resumed.training_loss == pytest.approx(whole.training_loss, rel=1e-6)
    assert resumed.manifest["fingerprint"] == whole.manifest["fingerprint"]
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert list(trainings.iterdir()) == []
    assert (tmp_path / "cache" / "notes.txt").read_text() == "mine"  # only the training's own folder was removed
    assert {p.name: p.read_bytes() for p in export_dir.iterdir() if p.is_file()} == before  # the input untouched


def stopped_training(export_dir: Path, model: Path, tmp_path: Path, step: int) -> Path:
    """Train into tmp_path/m with a checkpoint after every step, stopped when step `step` is reported; the
    training's folder of checkpoints."""
    def stop(stage, done, total):
        if done == step:
            raise _Stop

    with pytest.raises(_Stop):
        train_model(export_dir, tmp_path / "m", model=str(model), progress=stop, checkpoint_minutes=1e-9,
                    cache_dir=tmp_path / "cache", **FAST)
    [folder] = (tmp_path / "cache" / "trainings").iterdir()
    return folder


def test_a_damaged_checkpoint_is_not_resumed_from(export_dir, tiny_bi_encoder_dir, tmp_path):
    every_step = {"checkpoint_minutes": 1e-9, "cache_dir": tmp_path / "cache"}
    checkpoint = stopped_training(export_dir, tiny_bi_encoder_dir, tmp_path, 3) / "checkpoint-2"
    with open(checkpoint / "optimizer.pt", "r+b") as stream:
        stream.seek(100)
        stream.write(b"\xff\xff\xff\xff")
    with pytest.warns(CacheWarning, match="optimizer.pt changed after it was saved"):
        result = train_model(export_dir, tmp_path / "m", model=str(tiny_bi_encoder_dir), **every_step, **FAST)
    assert result.manifest["resumed_from_step"] == 0
    train_model(export_dir, tmp_path / "straight", model=str(tiny_bi_encoder_dir), checkpoint_minutes=0, **FAST)
    a, b = weights(tmp_path / "m"), weights(tmp_path / "straight")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_second_run_of_the_same_training_says_it_waits_for_the_first(export_dir, tiny_bi_encoder_dir, tmp_path):
    """While another run holds the training's lock, a run shows a waiting stage, then trains once it is let in."""
    import threading
    import time

    from hnm_core.checked_files import locked

    every_step = {"checkpoint_minutes": 1e-9, "cache_dir": tmp_path / "cache"}
    folder = stopped_training(export_dir, tiny_bi_encoder_dir, tmp_path, 2)
    calls, results = [], []
    waiting = "train: waiting for another run of the same training to finish"
    with locked(folder / ".lock"):  # the other run
        second = threading.Thread(target=lambda: results.append(train_model(
            export_dir, tmp_path / "m", model=str(tiny_bi_encoder_dir), progress=lambda *c: calls.append(c),
            **every_step, **FAST)))
        second.start()
        deadline = time.monotonic() + 60
        while not calls:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert calls == [(waiting, 0, 1)]
    second.join(timeout=120)
    [result] = results
    assert calls[:3] == [(waiting, 0, 1), (waiting, 1, 1), ("train", 0, result.steps)]
    assert result.manifest["resumed_from_step"] == 1


def test_cli_train_stopped_by_ctrl_c_resumes_and_quiet_prints_no_bars(export_dir, tiny_bi_encoder_dir, tmp_path):
    """The command a user runs: Ctrl-C once a checkpoint is saved, then the same command again; --quiet keeps the
    libraries' bars (loading and saving weights) off stderr too."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "hnm_core.cli", "train", str(export_dir), "--out", str(tmp_path / "model"),
            "--train-model", str(tiny_bi_encoder_dir), "--train-batch-size", "8", "--epochs", "40",
            "--train-precision", "fp32", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    # a checkpoint after every step, so the run is far from its end when the first one appears, however fast the
    # machine; the second run (every 10 minutes, the default) resumes from it all the same
    # SIGINT at its default in the child, as in a terminal: a suite started in the background (`make test &`)
    # ignores it, and a child inherits that
    first = subprocess.Popen([*args, "--checkpoint-minutes", "1e-9"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list((tmp_path / "cache").glob("trainings/*/checkpoint-*/hnm-checkpoint.json")):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert err.strip() == ("hnm train: interrupted; finished chunks and the training's last checkpoint are cached and "
                           "the same command resumes")

    second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)  # a hang guard, not a speed test
    assert second.returncode == 0 and second.stderr == "", second.stderr
    [line] = second.stdout.splitlines()
    assert "; resumed at step " in line and line.endswith(f"model saved to {tmp_path / 'model'}")
    assert list((tmp_path / "cache" / "trainings").iterdir()) == []

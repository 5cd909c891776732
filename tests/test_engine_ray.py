"""`--engine ray` against the local engine: the same pool, labels and exported negatives through the real CLI."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hnm_core.cli import main
from hnm_core.data import load_collection
from hnm_core.retrieve.dense import encode
from hnm_core.models.loading import load_bi_encoder
from hnm_core.pool import load_pool

pytest.importorskip("ray")

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
EXPORTS = ("triplet.parquet", "ntuple.parquet", "labeled_pair.parquet", "pool.parquet")


@pytest.mark.slow  # about 80 s on two busy cores: a local Ray cluster, four commands
def test_mine_and_curate_on_ray_equal_the_local_engine(tiny_bi_encoder_dir, tmp_path, capsys):
    from hnm_core.engines.ray_engine import session

    flags = ["--model", str(tiny_bi_encoder_dir), "--teacher-model", str(tiny_bi_encoder_dir), "--precision", "fp32",
             "--quiet", "--top-k", "30", "--relative-margin", "0.05"]
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert main(["mine", str(SAMPLE), "--out", str(local), "--cache-dir", str(tmp_path / "c1"), *flags]) == 0
    # Its own cache, so the Ray run encodes everything itself; one local cluster serves both Ray commands. The
    # re-curations apply a verdict, which the Ray tasks apply per run of queries.
    hard = pd.read_parquet(local / "pool.parquet").query("label == 'hard'").iloc[0]
    verdicts = tmp_path / "verdicts.jsonl"
    verdicts.write_text(json.dumps({"query_id": hard["query_id"], "doc_id": hard["doc_id"],
                                    "verdict": "unlabelled_positive"}) + "\n", encoding="utf-8")
    recurate = ["--negatives", "3", "--margin-ref", "auto", "--overrides", str(verdicts), "--quiet"]
    # The document embeddings as a file made elsewhere (the same model): the driver reads it, the actors encode the
    # queries, and the pool is the local one.
    model = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    np.save(tmp_path / "docs.npy", np.asarray(encode(model, load_collection(SAMPLE).doc_texts,
                                                     cache_dir=tmp_path / "maker"), dtype=np.float32))
    with session():
        assert main(["mine", str(SAMPLE), "--out", str(ray), "--cache-dir", str(tmp_path / "c2"), "--engine", "ray",
                     *flags]) == 0
        assert main(["mine", str(SAMPLE), "--out", str(tmp_path / "ray-file"), "--cache-dir", str(tmp_path / "c3"),
                     "--engine", "ray", "--doc-embeddings", str(tmp_path / "docs.npy"), *flags]) == 0
        assert main(["curate", str(ray), "--out", str(tmp_path / "recurated"), "--engine", "ray", *recurate]) == 0
    assert main(["curate", str(ray), "--out", str(tmp_path / "recurated_local"), *recurate]) == 0

    # The Ray pool is partitioned Parquet (one part per query partition) that load_pool reads as one table.
    parts = sorted((ray / "pool" / "pool.parquet").glob("part-*.parquet"))
    assert len(parts) >= 2
    pd.testing.assert_frame_equal(load_pool(ray / "pool").frame, load_pool(local / "pool").frame, check_exact=True)
    for name in EXPORTS:
        assert (ray / name).read_bytes() == (local / name).read_bytes(), name
    assert (ray / "flag.jsonl").read_text() == (local / "flag.jsonl").read_text()
    # The actors encode the local engine's batches: the same embeddings, bit for bit, under the same keys.
    keys = json.loads((local / "pool" / "manifest.json").read_text())["embeddings"]
    for side in ("docs", "queries"):
        np.testing.assert_array_equal(np.load(tmp_path / "c2" / "embeddings" / keys[side] / "embeddings.npy"),
                                      np.load(tmp_path / "c1" / "embeddings" / keys[side] / "embeddings.npy"))
    local_manifest, ray_manifest = (json.loads((d / "manifest.json").read_text()) for d in (local, ray))
    assert ray_manifest["counts"] == local_manifest["counts"] and ray_manifest["counts"]["false_negative"] > 0
    assert json.loads((ray / "pool" / "manifest.json").read_text())["engine"]["query_partitions"] == len(parts)
    pd.testing.assert_frame_equal(load_pool(tmp_path / "ray-file" / "pool").frame, load_pool(local / "pool").frame,
                                  check_exact=True)
    embeddings = json.loads((tmp_path / "ray-file" / "pool" / "manifest.json").read_text())["embeddings"]
    assert embeddings["files"] == {"docs": str(tmp_path / "docs.npy"), "queries": None}
    for name in EXPORTS:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "recurated" / name),
                                      pd.read_parquet(tmp_path / "recurated_local" / name), check_exact=True)
    assert len(pd.read_parquet(tmp_path / "recurated" / "ntuple.parquet").columns) == 2 + 3
    relabelled = pd.read_parquet(tmp_path / "recurated" / "pool.parquet").set_index(["query_id", "doc_id"])
    assert relabelled.loc[(hard["query_id"], hard["doc_id"]), "label"] == "unlabelled_positive"

    # The studio opens the Ray pool's folder of parts as it opens a local pool: the same queries and labels, a map.
    from tests.test_app import DATA, EXPLORE, TUNE, label_rows, metrics, new_session, open_page

    seen = {}
    for name, folder in (("local", local), ("ray", ray)):
        at = open_page(new_session(), DATA)
        at.radio(key="data_source").set_value("Folder or file path").run()
        at.text_input(key="data_path").input(str(folder / "pool")).run()
        at.button(key="load_pool").click().run()
        assert not at.exception and not at.error
        queries = metrics(at)["Queries"]
        open_page(at, TUNE)
        seen[name] = (queries, label_rows(at))
        open_page(at, EXPLORE)
        assert at.get("plotly_chart")
    assert seen["ray"] == seen["local"]


@pytest.mark.slow  # about 40 s: a local Ray cluster, one command each way
def test_a_bi_encoder_teacher_on_ray_scores_the_local_bytes(tiny_bi_encoder_dir, tmp_path):
    """bf16 (where batches decide the last bits), a teacher other than the miner: the driver scores the whole pool,
    its texts encoded by the actors in the local engine's batches, and the exports are the local bytes."""
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer

    from hnm_core.engines.ray_engine import session

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_bi_encoder_dir, teacher)
    model = SentenceTransformer(str(teacher))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.25)
    model.save(str(teacher))
    flags = ["--model", str(tiny_bi_encoder_dir), "--teacher", "bi-encoder", "--teacher-model", str(teacher),
             "--precision", "bf16", "--batch-size", "8", "--max-seq-length", "64", "--quiet",
             "--formats", "triplet,ntuple_scores,flag"]
    assert main(["mine", str(SAMPLE), "--out", str(tmp_path / "local"), "--cache-dir", str(tmp_path / "c1"),
                 *flags]) == 0
    with session():
        assert main(["mine", str(SAMPLE), "--out", str(tmp_path / "ray"), "--cache-dir", str(tmp_path / "c2"),
                     "--engine", "ray", *flags]) == 0
    for name in ("triplet.parquet", "ntuple_scores.parquet", "flag.jsonl"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    local, ray = (load_pool(tmp_path / d / "pool") for d in ("local", "ray"))
    pd.testing.assert_frame_equal(ray.frame, local.frame, check_exact=True)
    fingerprints = {d.meta["teacher"]["fingerprint"] for d in (local, ray)}
    assert len(fingerprints) == 1 and local.meta["model"]["fingerprint"] not in fingerprints

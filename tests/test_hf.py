"""Hugging Face datasets in and out (hnm_core.data.hf, export's hf format): a save_to_disk folder (a Dataset, or a
DatasetDict's split) is DATA for the CLI and the studio's Data page; a hub id that cannot be reached is a one-line
error naming it, in seconds; `--formats hf` writes a folder `datasets.load_from_disk` reads. Nothing is downloaded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")

from hnm_core.data import load_collection  # noqa: E402
from hnm_core.errors import DataError, ExportError  # noqa: E402

from .test_compat import pairs_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


@pytest.fixture(scope="module")
def pairs():
    return pairs_of(SAMPLE)[0]


def test_a_saved_dataset_folder_reads_as_its_pairs(pairs, tmp_path):
    pairs.save_to_disk(str(tmp_path / "pairs"))
    collection = load_collection(tmp_path / "pairs")
    assert (len(collection.query_ids), sum(map(len, collection.positives.values()))) == (42, 62)
    assert collection.source.startswith("Hugging Face dataset folder")


def test_a_saved_dataset_dict_reads_the_split_asked(pairs, tmp_path):
    folder = tmp_path / "dict"
    datasets.DatasetDict({"train": pairs.select(range(10)), "test": pairs}).save_to_disk(str(folder))
    assert len(load_collection(folder, split="train").query_ids) < len(load_collection(folder, split="test").query_ids)
    with pytest.raises(DataError, match=r"has no split 'dev'; its splits are train, test\. Fix: pick one with --split"):
        load_collection(folder, split="dev")
    alone = tmp_path / "alone"
    datasets.DatasetDict({"train": pairs}).save_to_disk(str(alone))
    only = load_collection(alone, split="test")  # the default split: a dict with one split reads that one
    assert len(only.query_ids) == 42 and "read its only split 'train'" in only.problems[0]


def test_flag_shaped_and_triplet_shaped_datasets_read_their_negatives(tmp_path):
    flag = datasets.Dataset.from_dict({"query": ["what is a python"], "pos": [["A python is a snake."]],
                                       "neg": [["Python is a language.", "A boa is a snake."]]})
    flag.save_to_disk(str(tmp_path / "flag"))
    triplet = datasets.Dataset.from_dict({"anchor": ["what is a python"], "positive": ["A python is a snake."],
                                          "negative": ["Python is a language."]})
    triplet.save_to_disk(str(tmp_path / "triplet"))
    for name, given in (("flag", 2), ("triplet", 1)):
        collection = load_collection(tmp_path / name)
        assert len(collection.doc_ids) == 1 + given and sum(map(len, collection.negatives.values())) == given


def test_an_unreachable_hub_id_is_one_line_naming_it_in_seconds(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(DataError) as error:
        load_collection("no-such-org/no-such-dataset", hf_split="train[:10]")
    assert time.monotonic() - started < 30
    text = str(error.value)
    assert text.startswith("no-such-org/no-such-dataset: cannot be loaded") and "\n" not in text and "Fix:" in text


def test_a_hub_that_does_not_answer_fails_before_the_client_retries(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.monotonic()
    with pytest.raises(DataError, match=r"no-such-org/data: cannot be loaded: the Hugging Face hub \(127\.0\.0\.1\) "
                                        r"cannot be reached.*HF_HUB_OFFLINE=1"):
        load_collection("no-such-org/data")
    assert time.monotonic() - started < 10


def test_a_mistyped_file_is_not_taken_for_a_hub_id(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_collection(Path("data/train.jsonl"))


def test_the_cli_mines_a_saved_folder_and_writes_hf_that_load_from_disk_reads(pairs, tiny_bi_encoder_dir, tmp_path):
    from hnm_core.cli import main

    folder = tmp_path / "dict"
    datasets.DatasetDict({"train": pairs}).save_to_disk(str(folder))
    out = tmp_path / "out"
    assert main(["mine", str(folder), "--split", "train", "--out", str(out), "--model", str(tiny_bi_encoder_dir),
                 "--teacher-model", str(tiny_bi_encoder_dir), "--cache-dir", str(tmp_path / "cache"), "--quiet",
                 "--precision", "fp32", "--negatives", "3", "--formats", "ntuple,labeled_pair,pool,hf"]) == 0
    saved = datasets.load_from_disk(str(out / "hf"))
    assert set(saved) == {"ntuple", "labeled_pair", "pool"}
    assert saved["ntuple"].column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    assert len(saved["ntuple"]) == len(datasets.Dataset.from_parquet(str(out / "ntuple.parquet")))
    assert saved["pool"].num_rows > 0 and "reason" in saved["pool"].column_names


def test_hf_alone_has_nothing_to_hold(tmp_path):
    from hnm_core.curate.rules import CurateParams, curate
    from hnm_core.export.formats import export
    from hnm_core.pool import PoolParams, build_pool

    pool = build_pool(load_collection(SAMPLE), PoolParams.from_settings({"sources": "bm25"}))
    with pytest.raises(ExportError, match="hf format holds the other asked formats.*--formats ntuple,hf"):
        export(pool, curate(pool.frame, CurateParams()), tmp_path / "out", formats="hf")


def test_the_data_page_loads_a_saved_dataset_dict_split(pairs, tmp_path):
    from tests.test_app import metrics, new_session, type_path

    folder = tmp_path / "dict"
    datasets.DatasetDict({"dev": pairs.select(range(5)), "train": pairs}).save_to_disk(str(folder))
    at = type_path(new_session(), folder)
    assert at.selectbox(key="setting:split").options == ["dev", "train"]
    at.selectbox(key="setting:split").set_value("train").run()
    at.button(key="load_path").click().run()
    assert not at.exception and metrics(at)["Queries"] == "42"


def test_the_export_page_writes_the_hf_folder(tiny_bi_encoder_dir):
    from tests.test_app import EXPORT, load_sample, new_session, open_page, tiny_mine

    at = tiny_mine(load_sample(new_session()), tiny_bi_encoder_dir)
    open_page(at, EXPORT)
    at.multiselect(key="setting:formats").set_value(["ntuple", "pool", "hf"]).run()
    at.button(key="export_build").click().run()
    assert not at.exception and not at.error
    out = at.session_state["export"].out_dir
    saved = datasets.load_from_disk(str(out / "hf"))
    # the random-weight model's near-equal scores leave no query a full quota: an empty dataset loads too
    assert len(saved["pool"]) > 0 and saved["ntuple"].column_names[:3] == ["anchor", "positive", "negative_1"]
    assert any(m.value.startswith("**hf/** · Hugging Face dataset folder: ntuple") for m in at.markdown)

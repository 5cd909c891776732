"""Bring-your-own embeddings: a file made by a model mines the same pool as encoding with that model; bad files are
refused with one line naming the file."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hnm_core.cli import main
from hnm_core.data import load_collection
from hnm_core.retrieve.dense import encode
from hnm_core.retrieve.embedding_files import read_embeddings
from hnm_core.errors import DataError
from hnm_core.models.loading import load_bi_encoder

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


@pytest.fixture(scope="module")
def sample_files(tiny_bi_encoder_dir, tmp_path_factory):
    """Document embeddings of sample_data as .npy (collection order) and query embeddings as Parquet (shuffled rows),
    made with the tiny bi-encoder in a cache of their own."""
    folder = tmp_path_factory.mktemp("byo")
    collection = load_collection(SAMPLE)
    model = load_bi_encoder(str(tiny_bi_encoder_dir), precision="fp32")
    docs = np.asarray(encode(model, collection.doc_texts, cache_dir=folder / "maker-cache"), dtype=np.float32)
    queries = np.asarray(encode(model, collection.query_texts, cache_dir=folder / "maker-cache"), dtype=np.float32)
    np.save(folder / "docs.npy", docs)
    order = np.random.default_rng(0).permutation(len(queries))
    pd.DataFrame({"query_id": np.asarray(collection.query_ids)[order],
                  "vector": list(queries[order])}).to_parquet(folder / "queries.parquet")
    return folder


def test_mine_with_embedding_files_gives_the_pool_of_the_model_that_made_them(sample_files, tiny_bi_encoder_dir,
                                                                             tmp_path):
    common = ["--model", str(tiny_bi_encoder_dir), "--teacher-model", str(tiny_bi_encoder_dir), "--precision", "fp32",
              "--quiet", "--top-k", "20"]
    assert main(["mine", str(SAMPLE), "--out", str(tmp_path / "encoded"), "--cache-dir", str(tmp_path / "c1"),
                 *common]) == 0
    assert main(["mine", str(SAMPLE), "--out", str(tmp_path / "files"), "--cache-dir", str(tmp_path / "c2"),
                 "--doc-embeddings", str(sample_files / "docs.npy"),
                 "--query-embeddings", str(sample_files / "queries.parquet"), *common]) == 0
    encoded = pd.read_parquet(tmp_path / "encoded" / "pool" / "pool.parquet")
    from_files = pd.read_parquet(tmp_path / "files" / "pool" / "pool.parquet")
    assert encoded["in_dense"].any()
    pd.testing.assert_frame_equal(encoded, from_files)
    for name in ("ntuple.parquet", "triplet.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "encoded" / name),
                                      pd.read_parquet(tmp_path / "files" / name))


def _ids(n: int, prefix: str = "d") -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(n))


def _unit(n: int, dim: int = 4) -> np.ndarray:
    rows = np.random.default_rng(1).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_unnormalised_rows_are_normalised_and_unit_rows_kept(tmp_path):
    rows = _unit(3)
    rows[1] *= 5
    np.save(tmp_path / "e.npy", rows)
    got, _ = read_embeddings(tmp_path / "e.npy", _ids(3), kind="document", cache_dir=tmp_path / "c")
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got[0], rows[0].astype(np.float16))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(got, np.float32), axis=1), 1, atol=2e-3)


def _npy(rows: np.ndarray):
    def write(path: Path) -> Path:
        np.save(path.with_suffix(".npy"), rows)
        return path.with_suffix(".npy")
    return write


def _parquet(ids: list[str], rows: np.ndarray, id_column: str = "id"):
    def write(path: Path) -> Path:
        pd.DataFrame({id_column: ids, "vector": list(rows)}).to_parquet(path.with_suffix(".parquet"))
        return path.with_suffix(".parquet")
    return write


def _ragged(path: Path) -> Path:
    rows = [list(r) for r in _unit(3)]
    rows[2] = rows[2][:3]
    pd.DataFrame({"id": ["d0", "d1", "d2"], "vector": rows}).to_parquet(path.with_suffix(".parquet"))
    return path.with_suffix(".parquet")


def _null_vector(path: Path) -> Path:
    pd.DataFrame({"id": ["d0", "d1", "d2"], "vector": [list(_unit(1)[0]), None, list(_unit(1)[0])]}).to_parquet(
        path.with_suffix(".parquet"))
    return path.with_suffix(".parquet")


def _nan_row() -> np.ndarray:
    rows = _unit(3)
    rows[2, 1] = np.nan
    return rows


def _zero_row() -> np.ndarray:
    rows = _unit(3)
    rows[0] = 0
    return rows


@pytest.mark.parametrize(("write", "dim", "message"), [
    (_npy(_unit(4)), None, "holds 4 rows but the collection has 3 documents"),
    (_npy(_unit(3)[:, :, None]), None, "not (rows, dimension)"),
    (_npy(np.ones((3, 4), dtype=np.int64)), None, "int64 values, not floats"),
    (_npy(_nan_row()), None, "document row 2 holds NaN or infinite values"),
    (_npy(_zero_row()), None, "document row 0 is all zeros"),
    (_npy(_unit(3)), 8, "holds 4-dimensional document embeddings, the other file 8"),
    (_parquet(["d0", "d1"], _unit(2)), None, "lacks 1 of the collection's 3 documents (e.g. 'd2')"),
    (_parquet(["d0", "d1", "d1"], _unit(3)), None, "document id 'd1' appears twice (rows 1 and 2)"),
    (_parquet(["d0", "d1", "x"], _unit(3)), None, "row 2 has document id 'x', which is not in the collection"),
    (_parquet(["d0", "d1", "d2"], _unit(3), id_column="name"), None, "needs one id column"),
    (_ragged, None, "vector of row 2 has 3 values, row 0 4"),
    (_null_vector, None, "row 1 has no vector"),
    (lambda path: (path.with_suffix(".csv").write_text("1,2\n"), path.with_suffix(".csv"))[1], None,
     "is neither .npy nor .parquet"),
])
def test_bad_files_are_refused_in_one_line_naming_the_file(tmp_path, write, dim, message):
    path = write(tmp_path / "emb")
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        read_embeddings(path, _ids(3), kind="document", dim=dim, cache_dir=tmp_path / "c")
    assert str(caught.value).startswith(str(path)) and "Fix:" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("side", "other"), [("doc", "query"), ("query", "doc")])
def test_a_file_of_another_dimension_than_the_encoded_side_is_refused(tiny_bi_encoder_dir, tmp_path, capsys, side,
                                                                      other):
    collection = load_collection(SAMPLE)
    n = len(collection.doc_ids if side == "doc" else collection.query_ids)
    np.save(tmp_path / "wide.npy", _unit(n, dim=64))  # the tiny encoder makes 32 dimensions
    assert main(["pool", str(SAMPLE), "--out", str(tmp_path / "o"), "--model", str(tiny_bi_encoder_dir),
                 "--precision", "fp32", "--cache-dir", str(tmp_path / "c"), "--quiet",
                 f"--{side}-embeddings", str(tmp_path / "wide.npy")]) == 2
    kind = "document" if side == "doc" else "query"
    err = capsys.readouterr().err
    assert f"wide.npy: holds 64-dimensional {kind} embeddings;" in err
    assert f"makes 32-dimensional {'query' if side == 'doc' else 'document'} embeddings" in err
    assert f"Fix: give --{other}-embeddings too" in err


def test_a_parquet_file_is_read_batch_by_batch_into_collection_order(tmp_path, monkeypatch):
    """Rows in any order, over several row groups and record batches: the same embeddings as the .npy file in
    collection order, and a ragged row in a later batch is still named."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import hnm_core.retrieve.embedding_files as embedding_files

    monkeypatch.setattr(embedding_files, "_READ_BYTES", 3 * 4 * 4)  # 3 rows of 4 dimensions per record batch
    rows, ids = _unit(10) * 2, _ids(10)
    np.save(tmp_path / "e.npy", rows)
    order = np.random.default_rng(0).permutation(10)
    table = pa.table({"doc_id": [ids[i] for i in order], "vector": [list(rows[i]) for i in order]})
    pq.write_table(table, tmp_path / "e.parquet", row_group_size=4)
    expected, _ = read_embeddings(tmp_path / "e.npy", ids, kind="document", cache_dir=tmp_path / "c1")
    got, _ = read_embeddings(tmp_path / "e.parquet", ids, kind="document", cache_dir=tmp_path / "c2")
    np.testing.assert_array_equal(got, expected)
    assert sorted(p.name for p in (tmp_path / "c2").iterdir()) == ["embeddings", "locks"]  # no scratch file left

    vectors = [list(rows[i]) for i in order]
    vectors[7] = vectors[7][:2]
    pq.write_table(pa.table({"doc_id": [ids[i] for i in order], "vector": vectors}), tmp_path / "bad.parquet",
                   row_group_size=4)
    with pytest.raises(DataError, match=re.escape("vector of row 7 has 2 values, row 0 4")):
        read_embeddings(tmp_path / "bad.parquet", ids, kind="document", cache_dir=tmp_path / "c3")

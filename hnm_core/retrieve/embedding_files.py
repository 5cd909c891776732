"""Stage 2b, dense retrieval from embeddings made elsewhere (a vector store, a GPU job): read and check a file.

Two layouts:
- `.npy`: an (n, dim) float array whose row i belongs to the collection's i-th document (or query), in collection
  order (`hnm pool` writes corpus.parquet / queries.parquet in that order);
- Parquet: an id column (`id`, `_id`, `doc_id` or `query_id`) and one list-of-floats vector column; rows in any
  order, each collection id exactly once. The vectors are read one record batch at a time (`_ParquetRows`), so the
  file may be larger than memory.

Checks, each a one-line DataError naming the file and the fix: the number of rows, the ids (missing, repeated or
unknown), the dimension (2-d, the same for documents and queries), and finite, non-zero values. Rows whose L2 norm is
within 1e-3 of 1 are kept as given (so a file from `model.encode(..., normalize_embeddings=True)` mines exactly what
encoding with that model mines); others are normalised, since every search here is by cosine.

The checked rows are stored float16 in the embedding cache under a key of the file's bytes, so the pool manifest
points at them as at encoded embeddings and a second run reads them back without re-reading the file.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ..cache import EmbeddingCache, texts_digest
from ..errors import DataError
from ..progress import Progress, no_progress

__all__ = ["read_embeddings", "file_key"]

_ID_COLUMNS = ("id", "_id", "doc_id", "query_id")
_NORM_TOLERANCE = 1e-3
# Rows checked and cached per step: bounded memory whatever the file's size.
_BLOCK = 65_536
# Vectors read from a Parquet file per record batch, in float32 bytes (8,192 rows of 512 dimensions).
_READ_BYTES = 16 << 20


def file_key(path: Path, ids: Sequence[str]) -> str:
    """Cache key of an embeddings file read for `ids`: blake2b of its bytes (about 1 GB/s) and of the ids (a Parquet
    file is reordered to them), so an edited file, or another collection, is read again."""
    h = hashlib.blake2b(digest_size=16)
    h.update(b"embeddings-file-v1\x00")
    h.update(texts_digest(ids).encode())
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def read_embeddings(
    path: str | Path,
    ids: Sequence[str],
    *,
    kind: Literal["document", "query"],
    dim: int | None = None,
    cache_dir: str | Path | None = None,
    progress: Progress = no_progress,
) -> tuple[np.ndarray, str]:
    """The checked, L2-normalised float16 embeddings of `ids` from `path` (a memmap from the cache) and their cache
    key. `kind` names the rows in messages; `dim`, when given, is the dimension they must have (the other file's)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(path, f"no such {kind} embeddings file", fix="give a .npy or Parquet file that exists")
    flag = f"--{kind.replace('document', 'doc')}-embeddings"
    cache = EmbeddingCache(cache_dir, chunk_rows=_BLOCK)
    if path.suffix.lower() == ".npy":
        rows = _npy_rows(path, len(ids), kind, flag)
    elif path.suffix.lower() == ".parquet":
        rows = _ParquetRows(path, ids, kind, flag, cache.root)
    else:
        raise DataError(path, "is neither .npy nor .parquet", fix=f"give {flag} a .npy array in collection order, "
                        "or a Parquet file with an id column and a vector column")
    if dim is not None and rows.shape[1] != dim:
        raise DataError(path, f"holds {rows.shape[1]}-dimensional {kind} embeddings, the other file {dim}",
                        fix="give document and query embeddings from the same model")
    key = file_key(path, ids)

    def compute(start: int, stop: int) -> np.ndarray:
        return _checked(np.array(rows[start:stop], dtype=np.float32), path, start, kind)

    stored = cache.get_or_compute(key, len(ids), compute, meta={"model": str(path), "file": str(path)},
                                  progress=progress, stage=f"read {kind} embeddings")
    return stored, key


def _npy_rows(path: Path, n: int, kind: str, flag: str) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(path, f"is not a readable .npy array ({' '.join(str(error).split())})",
                        fix="save it with numpy.save (no pickled objects)") from None
    if array.ndim != 2:
        raise DataError(path, f"holds an array of shape {array.shape}, not (rows, dimension)",
                        fix=f"give {flag} one row per {kind}")
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(path, f"holds {array.dtype} values, not floats", fix="save the embeddings as float16/32/64")
    if array.shape[0] != n:
        raise DataError(path, f"holds {array.shape[0]:,} rows but the collection has {n:,} {kind}s",
                        fix=f"give one row per {kind}, in collection order (or Parquet with an id column)")
    return array


class _ParquetRows:
    """The vector column of a Parquet file in the collection's id order, sliceable like an array.

    Only the id column is read when it is made (and checked). The vectors are read on the first slice, one record
    batch of about `_READ_BYTES` at a time, and scattered into a float32 scratch file in collection order (in
    `scratch`, gone with the object), so memory holds one batch whatever the file's size. For a file already in the
    cache only the ids and the first vector are read (every run hashes the file's bytes for its cache key)."""

    def __init__(self, path: Path, ids: Sequence[str], kind: str, flag: str, scratch: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            # unbuffered whole-chunk reads (pre_buffer) hold a row group's column at once; 1 MiB reads do not
            self._file = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
            schema = self._file.schema_arrow
        except (pa.ArrowException, OSError) as error:
            raise DataError(path, f"is not a readable Parquet file ({' '.join(str(error).split())})",
                            fix="write it with pandas.to_parquet or pyarrow") from None
        id_column = next((name for name in _ID_COLUMNS if name in schema.names), None)
        vectors = [f for f in schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)
                   or pa.types.is_large_list(f.type)]
        if id_column is None or len(vectors) != 1:
            raise DataError(path, f"has columns {', '.join(schema.names)}; needs one id column "
                            f"({', '.join(_ID_COLUMNS)}) and one list-of-floats vector column",
                            fix=f"give {flag} a table of (id, vector)")
        file_ids = self._file.read(columns=[id_column]).column(0).cast(pa.string()).to_pylist()
        wanted = {i: pos for pos, i in enumerate(ids)}
        at = np.full(len(ids), -1, dtype=np.int64)
        for row, i in enumerate(file_ids):
            pos = wanted.get(i)
            if pos is None:
                raise DataError(path, f"row {row} has {kind} id {i!r}, which is not in the collection",
                                fix=f"give embeddings of this collection's {kind}s only")
            if at[pos] >= 0:
                raise DataError(path, f"{kind} id {i!r} appears twice (rows {at[pos]} and {row})",
                                fix="keep one vector per id")
            at[pos] = row
        if (at < 0).any():
            missing = [ids[p] for p in np.flatnonzero(at < 0)[:3]]
            raise DataError(path, f"lacks {int((at < 0).sum()):,} of the collection's {len(ids):,} {kind}s "
                            f"(e.g. {', '.join(map(repr, missing))})", fix=f"give a vector for every {kind}")
        self._position = np.empty(len(ids), dtype=np.int64)  # file row -> collection position
        self._position[at] = np.arange(len(ids))
        self._path, self._vector, self._scratch = path, vectors[0].name, scratch
        first = next(self._batches(1), None)
        self.shape = (len(ids), first.shape[1] if first is not None else 0)
        self._values: np.ndarray | None = None

    def _batches(self, size: int, dim: int | None = None) -> Iterator[np.ndarray]:
        """The file's vectors in its row order, `size` rows at a time as a float32 (rows, dim) array. A null vector,
        or one whose length is not `dim` (by default the first row's), is a DataError naming its row."""
        row = 0
        for batch in self._file.iter_batches(batch_size=size, columns=[self._vector], use_threads=False):
            column = batch.column(0)
            if column.null_count:
                bad = row + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
                raise DataError(self._path, f"row {bad} has no vector", fix="give every row a vector, or drop it")
            lengths = np.diff(np.asarray(column.offsets)) if hasattr(column, "offsets") \
                else np.full(len(column), column.type.list_size)
            if dim is None:
                dim = int(lengths[0]) if len(lengths) else 0
            if (lengths != dim).any():
                bad = int(np.flatnonzero(lengths != dim)[0])
                raise DataError(self._path, f"vector of row {row + bad} has {lengths[bad]} values, row 0 {dim}",
                                fix="give vectors of one dimension")
            yield np.asarray(column.flatten(), dtype=np.float32).reshape(len(column), dim)
            row += len(column)

    def _load(self) -> np.ndarray:
        self._scratch.mkdir(parents=True, exist_ok=True)
        self._handle = tempfile.TemporaryFile(dir=self._scratch, prefix="parquet-vectors-")
        values = np.memmap(self._handle, dtype=np.float32, mode="w+", shape=self.shape)
        row = 0
        for batch in self._batches(max(1, _READ_BYTES // (4 * max(self.shape[1], 1))), self.shape[1]):
            values[self._position[row:row + len(batch)]] = batch
            row += len(batch)
        return values

    def __getitem__(self, span: slice) -> np.ndarray:
        if self._values is None:
            self._values = self._load()
        return self._values[span]


def _checked(rows: np.ndarray, path: Path, start: int, kind: str) -> np.ndarray:
    """`rows` (from row `start` of `path`) with finite values, normalised where their norm is not already 1."""
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        raise DataError(path, f"{kind} row {start + int(np.flatnonzero(bad)[0])} holds NaN or infinite values",
                        fix="recompute that embedding, or drop the row from the collection")
    norms = np.linalg.norm(rows, axis=1)
    if (norms == 0).any():
        raise DataError(path, f"{kind} row {start + int(np.flatnonzero(norms == 0)[0])} is all zeros",
                        fix="an embedding needs a direction: recompute it")
    off = np.abs(norms - 1) > _NORM_TOLERANCE
    rows[off] /= norms[off, None]
    return rows

"""A pool on disk: save_pool writes the table, the collection it was mined from and a manifest into a folder that
appears all at once; load_pool reads one back, each file checked, so a damaged folder is an error naming the file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..cache import EmbeddingCache
from ..data import Collection
from ..manifest import write_json
from ..schema import MEMBER_COLUMNS, POOL_COLUMNS, missing_columns
from ..wording import one_line

if TYPE_CHECKING:
    pass
from .params import Pool, PoolStats

__all__ = ["save_pool", "load_pool"]


_POOL_FILES = ("pool.parquet", "corpus.parquet", "queries.parquet", "positives.parquet", "manifest.json")


def save_pool(pool: Pool, out_dir: str | Path, *, overwrite: bool = False, inputs: Sequence[str | Path] = (),
              write_frame: Callable[[pd.DataFrame, Path], None] | None = None) -> Path:
    """Write the pool folder (see docs/ARCHITECTURE.md). It is written beside `out_dir` and renamed into place, so an
    interrupted save never leaves half a pool. overwrite / inputs: as for `export` (see hnm_core.outputs.folder).
    write_frame: writes pool.parquet instead of one file (the Ray engine writes a folder of parts, which load_pool
    reads as one table)."""
    from ..outputs.folder import write_output

    c = pool.collection
    positives = [(q, d) for q in c.query_ids for d in c.positives[q]]
    tables = {
        "pool.parquet": pool.frame,
        "corpus.parquet": pd.DataFrame({"doc_id": pd.array(c.doc_ids, dtype="string"),
                                        "text": pd.array(c.doc_texts, dtype="string")}),
        "queries.parquet": pd.DataFrame({"query_id": pd.array(c.query_ids, dtype="string"),
                                         "text": pd.array(c.query_texts, dtype="string")}),
        "positives.parquet": pd.DataFrame(positives, columns=["query_id", "doc_id"]).astype("string"),
    }
    manifest = {**pool.meta, "collection": {**pool.meta.get("collection", {}), "problems": list(c.problems)}}
    with write_output(out_dir, "pool", overwrite=overwrite, inputs=inputs) as tmp:
        for name, table in tables.items():
            if name == "pool.parquet" and write_frame is not None:
                write_frame(table, tmp / name)
            else:
                table.to_parquet(tmp / name, index=False)
        write_json(tmp / "manifest.json", manifest)
    return Path(out_dir).expanduser()


def load_pool(folder: str | Path) -> Pool:
    """Read a pool folder written by `save_pool` (or an export's pool). Embeddings come back from the cache when it
    still holds them. A damaged file (truncated, hand-edited) raises DataError naming it."""
    import json

    from ..errors import DataError

    folder = Path(folder)
    missing = [name for name in _POOL_FILES if not (folder / name).exists()]
    if missing:
        raise DataError(folder, f"not a pool folder (missing {', '.join(missing)}).",
                        fix="point at a folder written by `hnm pool` or `hnm mine`")
    rebuild = "rebuild the pool with `hnm pool` (or `hnm mine`), or point at an intact copy"
    manifest = folder / "manifest.json"
    try:
        meta = json.loads(manifest.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # ValueError covers bad UTF-8 and bad JSON
        raise DataError(manifest, f"cannot be read ({one_line(error)})", fix=rebuild) from None
    if not isinstance(meta, dict):
        raise DataError(manifest, f"holds a JSON {type(meta).__name__}, not an object", fix=rebuild)
    sections = ("settings", "collection", "stats", "embeddings", "model", "teacher")
    wrong = [key for key in sections if key in meta and not isinstance(meta[key], dict)]
    if wrong:
        raise DataError(manifest, f"is not a manifest written by hnm ({', '.join(wrong)} should be a JSON object)",
                        fix=rebuild)
    emb = meta.get("embeddings")
    if emb and not all(isinstance(emb.get(key), str) for key in ("cache_dir", "docs", "queries")):
        raise DataError(manifest, "'embeddings' lacks cache_dir, docs or queries", fix=rebuild)
    frame = _read_table(folder / "pool.parquet", tuple(POOL_COLUMNS), rebuild)
    columns = {**POOL_COLUMNS, **{name: t for name, t in MEMBER_COLUMNS.items() if name in frame.columns}}
    try:
        frame = frame.astype(columns)[list(columns)]
    except (TypeError, ValueError) as error:
        raise DataError(folder / "pool.parquet", f"has columns of the wrong type ({one_line(error)})",
                        fix=rebuild) from None
    corpus = _read_table(folder / "corpus.parquet", ("doc_id", "text"), rebuild)
    queries = _read_table(folder / "queries.parquet", ("query_id", "text"), rebuild)
    positives = _read_table(folder / "positives.parquet", ("query_id", "doc_id"), rebuild)
    grouped: dict[str, tuple[str, ...]] = {}
    for qid, did in zip(positives["query_id"].tolist(), positives["doc_id"].tolist()):
        grouped[qid] = grouped.get(qid, ()) + (did,)
    info = meta.get("collection", {})
    collection = Collection(
        name=info.get("name", folder.name),
        doc_ids=tuple(corpus["doc_id"].tolist()),
        doc_texts=tuple(corpus["text"].tolist()),
        query_ids=tuple(queries["query_id"].tolist()),
        query_texts=tuple(queries["text"].tolist()),
        positives=grouped,
        problems=tuple(info.get("problems", ())),
        source=info.get("source", str(folder)),
    )
    stats_fields = {k: v for k, v in meta.get("stats", {}).items() if k in PoolStats.__dataclass_fields__}
    stats = PoolStats(**stats_fields) if stats_fields else PoolStats(
        len(collection.query_ids), int((~frame["is_positive"]).sum()), int(frame["is_positive"].sum()), 0, 0)
    doc_emb = query_emb = None
    if emb:
        cache = EmbeddingCache(emb["cache_dir"])
        doc_emb = cache.get(emb["docs"], len(collection.doc_ids))
        query_emb = cache.get(emb["queries"], len(collection.query_ids))
    return Pool(frame, collection, stats, meta, doc_emb, query_emb)


def _read_table(path: Path, columns: tuple[str, ...], fix: str) -> pd.DataFrame:
    """One Parquet file of a pool folder, with the columns it must have; DataError naming it otherwise."""
    import pyarrow as pa

    from ..errors import DataError

    try:
        table = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as error:  # truncated, not Parquet at all, unreadable
        raise DataError(path, f"is not a readable Parquet file ({one_line(error)})", fix=fix) from None
    absent = missing_columns(table, columns)
    if absent:
        raise DataError(path, f"lacks columns {', '.join(absent)}.", fix=fix)
    return table

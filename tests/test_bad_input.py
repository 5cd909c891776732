"""Malformed input through the real entry points: `hnm pool` / `hnm curate` answer every case with exit 2 and one
line on stderr naming the file, never a traceback; and property-based fuzzing of the readers (random bytes, random
JSON lines) shows they load or raise DataError, nothing else. The promises are listed in docs/reliability.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hnm_core.cli import main
from hnm_core.data import Collection, load_collection
from hnm_core.errors import DataError

from .test_data import BAD_INPUTS, CORPUS, QRELS, QUERIES, Files, beir_folder, write
from .test_outdir import read_only  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


def assert_one_line_error(code: int, out: str, err: str, *names: str) -> str:
    """exit 2, nothing on stdout, one line on stderr that names every one of `names`, no traceback."""
    assert code == 2, (code, out, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], lines[0]
    assert " Fix: " in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------------
# `hnm pool` on every malformed input of test_data.py, plus the cases only a real filesystem can make


@pytest.mark.parametrize(("files", "target", "where"), [case[1:4] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_pool_command_answers_bad_data_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], files: Files,
                                                   target: str, where: str) -> None:
    data = tmp_path / "data"
    if target == ".":
        beir_folder(data, **files)
    else:
        data.mkdir()
        write(data, files)
    code = main(["pool", str(data / target), "--out", str(tmp_path / "out"), "--sources", "bm25", "--quiet",
                 "--cache-dir", str(tmp_path / "cache")])
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.out, captured.err, f"hnm pool: error: {data}", where)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["link-loop", "dangling-link", "link-loop-file"])
def test_pool_command_names_a_link_it_cannot_follow(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    case: str) -> None:
    folder = beir_folder(tmp_path / "data", **{"corpus.jsonl": None})
    (folder / "corpus.jsonl").symlink_to("gone.jsonl" if case == "dangling-link" else "corpus.jsonl")
    target = folder / "corpus.jsonl" if case == "link-loop-file" else folder
    code = main(["pool", str(target), "--out", str(tmp_path / "out"), "--quiet"])
    captured = capsys.readouterr()
    line = assert_one_line_error(code, captured.out, captured.err, str(folder / "corpus.jsonl"))
    assert "is a link that cannot be followed" in line


# ---------------------------------------------------------------------------------------------------------------------
# `hnm curate` on a damaged pool folder, `--config` with a damaged manifest


@pytest.fixture(scope="module")
def saved_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real pool folder (BM25 only: no model needed) to damage copies of."""
    root = tmp_path_factory.mktemp("pool")
    assert main(["pool", str(SAMPLE), "--out", str(root / "pool"), "--sources", "bm25", "--top-k", "5", "--quiet",
                 "--cache-dir", str(root / "cache")]) == 0
    return root / "pool"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_manifest(change: dict[str, Any]):
    def apply(path: Path) -> None:
        manifest = json.loads(path.read_text())
        manifest.update(change)
        path.write_text(json.dumps(manifest))
    return apply


def _wrong_types(path: Path) -> None:
    frame = pd.read_parquet(path)
    frame["bm25_rank"] = "first"
    frame.to_parquet(path, index=False)


DAMAGED_POOLS = [
    # (id, damaged file, damage)
    ("pool-truncated", "pool.parquet", _truncate),
    ("corpus-truncated", "corpus.parquet", _truncate),
    ("queries-empty", "queries.parquet", lambda p: p.write_bytes(b"")),
    ("positives-not-parquet", "positives.parquet", lambda p: p.write_text("query_id,doc_id\nq1,d1\n")),
    ("pool-wrong-types", "pool.parquet", _wrong_types),
    ("corpus-missing-column", "corpus.parquet", lambda p: pd.DataFrame({"doc_id": ["d1"]}).to_parquet(p)),
    ("manifest-truncated", "manifest.json", _truncate),
    ("manifest-not-utf8", "manifest.json", lambda p: p.write_bytes(b'{"settings": "\xff"}')),
    ("manifest-array", "manifest.json", lambda p: p.write_text("[]")),
    ("manifest-settings-not-object", "manifest.json", _edit_manifest({"settings": "top_k=5"})),
    ("manifest-embeddings-partial", "manifest.json", _edit_manifest({"embeddings": {"cache_dir": "/tmp"}})),
]


@pytest.mark.parametrize(("name", "damage"), [case[1:] for case in DAMAGED_POOLS],
                         ids=[case[0] for case in DAMAGED_POOLS])
def test_curate_command_answers_a_damaged_pool_in_one_line(saved_pool: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str], name: str,
                                                           damage: Any) -> None:
    pool = tmp_path / "pool"
    shutil.copytree(saved_pool, pool)
    damage(pool / name)
    code = main(["curate", str(pool), "--out", str(tmp_path / "out"), "--quiet"])
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.out, captured.err, f"hnm curate: error: {pool / name}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("manifest", ['{"settings": {"top_k": 5', '{"settings": {"sources": 5}}',
                                      '{"settings": {"ceiling": "nan"}}', '{"settings": {"top_k": 1e999}}',
                                      "[" * 100_000, '{"settings": {"top_k": ' + "9" * 5000 + "}}"])
def test_config_with_a_damaged_manifest_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     manifest: str) -> None:
    config = tmp_path / "manifest.json"
    config.write_text(manifest)
    code = main(["pool", str(SAMPLE), "--out", str(tmp_path / "out"), "--config", str(config), "--quiet"])
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.out, captured.err, f"hnm pool: error: {config}")


@pytest.mark.parametrize(("manifest", "fragment"), [
    # a model's config.json: JSON, but no hnm setting in it, so nothing would be replayed
    ('{"architectures": ["BertModel"], "hidden_size": 384, "max_position_embeddings": 512}',
     "holds no hnm settings (its keys: 'architectures', 'hidden_size', 'max_position_embeddings')"),
    ('{"settings": {}}', "holds no hnm settings"),
    # an int setting given a fraction or a boolean used to become 2 or 1
    ('{"settings": {"negatives": 2.9}}', "negatives: 2.9 is not a whole number"),
    ('{"settings": {"negatives": true}}', "negatives: True is not a int"),
    ('{"settings": {"bm25_k1": false}}', "bm25_k1: False is not a float"),
])
def test_config_that_would_replay_something_else_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              manifest: str, fragment: str) -> None:
    config = tmp_path / "config.json"
    config.write_text(manifest)
    code = main(["pool", str(SAMPLE), "--out", str(tmp_path / "out"), "--config", str(config), "--sources", "bm25",
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.out, captured.err, f"hnm pool: error: {config}: ", fragment)


@pytest.mark.parametrize("command", [["pool", "--sources", "dense", "--model", "{model}", "--max-seq-length", "1024"],
                                     ["mine", "--sources", "bm25", "--teacher-model", "{model}", "--max-seq-length",
                                      "1024"],
                                     ["train-teacher", "--base-model", "{model}", "--teacher-max-length", "1024"]],
                         ids=["pool", "mine-teacher", "train-teacher"])
def test_a_max_length_above_the_models_limit_is_refused_before_any_work(tiny_bi_encoder_dir: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str],
                                                                        command: list[str]) -> None:
    broken = tmp_path / "pairs.jsonl"  # the data is broken too: the length error comes first, so nothing was read
    broken.write_text('{"query": "a", "positive": \n')
    args = [a.format(model=tiny_bi_encoder_dir) for a in command]
    code = main([args[0], str(broken), *args[1:], "--out", str(tmp_path / "out"), "--cache-dir",
                 str(tmp_path / "cache"), "--quiet"])
    captured = capsys.readouterr()
    line = assert_one_line_error(code, captured.out, captured.err, str(tiny_bi_encoder_dir), "can take: 512 tokens")
    assert "pairs.jsonl" not in line and not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["a-file", "below-a-file", "locks-a-file", "read-only", "locks-read-only"])
def test_a_cache_dir_hnm_cannot_write_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 read_only: Any, case: str) -> None:
    cache = tmp_path / "cache"
    if case == "a-file":
        blocked = cache
        blocked.write_text("x")
    elif case == "below-a-file":
        blocked = tmp_path / "taken"
        blocked.write_text("x")
        cache = blocked / "cache"
    elif case == "locks-a-file":
        cache.mkdir()
        blocked = cache / "locks"
        blocked.write_text("x")
    else:  # NotADirectoryError / PermissionError on locks/ after reading and indexing the data, it was
        (cache / "locks").mkdir(parents=True)
        blocked = cache / "locks" if case == "locks-read-only" else cache
        read_only(blocked)
    broken = tmp_path / "pairs.jsonl"  # the data is broken too: the cache error comes first
    broken.write_text('{"query": "a", "positive": \n')
    code = main(["pool", str(broken), "--out", str(tmp_path / "out"), "--cache-dir", str(cache), "--quiet"])
    captured = capsys.readouterr()
    why = "is not writable" if "read-only" in case else "is a file"
    line = assert_one_line_error(code, captured.out, captured.err, f"hnm pool: error: {cache}: cannot hold the "
                                 f"cache: {blocked} {why}", "Fix: point --cache-dir")
    assert "pairs.jsonl" not in line and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# A few through a real process: what a user sees, exit status included


def _hnm(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "hnm_core.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_drill_cases_in_a_real_process(tmp_path: Path, saved_pool: Path) -> None:
    surrogate = beir_folder(tmp_path / "beir", **{"corpus.jsonl": '{"_id": "d1", "text": "a \\ud800"}\n'})
    flag = tmp_path / "flag.jsonl"
    flag.write_text('{"query": "a", "pos": ["b\\udc00"]}\n')
    pool = tmp_path / "pool"
    shutil.copytree(saved_pool, pool)
    _truncate(pool / "pool.parquet")
    for args, name in ((["pool", str(surrogate)], surrogate / "corpus.jsonl"), (["pool", str(flag)], flag),
                       (["curate", str(pool)], pool / "pool.parquet")):
        done = _hnm(*args, "--out", str(tmp_path / "out"), "--quiet")
        assert_one_line_error(done.returncode, done.stdout, done.stderr, str(name))


# ---------------------------------------------------------------------------------------------------------------------
# Fuzzing: the readers load or raise DataError, and what loads is usable (encodable texts, positives that exist)

FUZZ = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# Text with the characters that broke readers before: lone surrogates (escaped by json.dumps), tabs, newlines,
# quotes, a BOM, NUL. Joined from a list: st.text drops surrogates from an alphabet that mixes in st.characters().
TEXT = st.lists(st.characters() | st.sampled_from(["\ud800", "\udc00", "\ud83d", "\t", "\n", '"', ",", "\ufeff",
                                                   "\x00"]), max_size=12).map("".join)
KEYS = st.sampled_from(["_id", "text", "title", "query", "anchor", "pos", "neg", "positive", "negative",
                        "negative_1", "label"]) | TEXT
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


# One change to an otherwise valid file: (record, field, what, a value, a key). The record and field indexes wrap.
MUTATIONS = st.tuples(st.integers(0, 3), st.integers(0, 4), st.sampled_from(["drop", "replace", "repeat", "stray"]),
                      VALUES, KEYS)


def records(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[list[list[tuple[str, Any]]]]:
    """Valid records of one format (as (key, value) lists, so a key can repeat as it can in a file), half the time
    with one mutation: a field dropped, its value replaced by any JSON value, its key repeated, a stray key added.
    Valid-first keeps the fuzz reaching past the first check of each record."""
    valid = st.lists(st.fixed_dictionaries(fields).map(lambda r: list(r.items())), min_size=1, max_size=4)
    return st.tuples(valid, st.none() | MUTATIONS).map(lambda drawn: mutate(*drawn))


def mutate(rows: list[list[tuple[str, Any]]], change: tuple[int, int, str, Any, str] | None
           ) -> list[list[tuple[str, Any]]]:
    if change is None:
        return rows
    at, column, what, value, key = change
    row = rows[at % len(rows)]
    name = row[column % len(row)][0]
    if what == "drop":
        row.pop(column % len(row))
    elif what == "replace":
        row[column % len(row)] = (name, value)
    elif what == "repeat":
        row.append((name, value))
    else:
        row.append((key, value))
    return rows


WORDS = st.text(alphabet=st.characters(), min_size=1, max_size=8)  # no surrogates: those come from TEXT, sometimes
GOOD = WORDS | WORDS | WORDS | TEXT
GOODS = st.lists(GOOD, min_size=1, max_size=3)
# Per file: the records it holds. Ids come mostly from those the fixed BEIR files name, so loads can succeed.
RECORDS = {
    "corpus.jsonl": records(_id=st.sampled_from(["d1", "d2", "d3", "d4"]) | WORDS, title=GOOD, text=GOOD),
    "queries.jsonl": records(_id=st.sampled_from(["q1", "q2", "q3"]) | WORDS, text=GOOD),
    "pairs.jsonl": records(query=GOOD, positive=GOOD, negative=GOOD),
    "pairs.json": records(anchor=GOOD, positive=GOOD, negative_1=GOOD, negative_2=GOOD | GOODS),
    "flag.jsonl": records(query=GOOD, pos=GOODS, neg=GOODS),
}


def json_line(pairs: list[tuple[str, Any]], ascii_only: bool) -> str:
    body = ", ".join(f"{json.dumps(k, ensure_ascii=ascii_only)}: {json.dumps(v, ensure_ascii=ascii_only)}"
                     for k, v in pairs)
    return "{" + body + "}"


def check_loads_or_data_error(path: Path) -> None:
    try:
        collection = load_collection(path)
    except DataError as error:
        assert "\n" not in str(error)
        return
    assert_usable(collection)


def assert_usable(collection: Collection) -> None:
    """What the later stages rely on: texts that can be hashed and saved, positives and negatives in the corpus."""
    for text in (*collection.doc_texts, *collection.query_texts):
        assert text.strip()
        text.encode("utf-8")
    assert len(set(collection.doc_ids)) == len(collection.doc_ids)
    assert collection.query_ids and set(collection.query_ids) <= collection.positives.keys()
    for query_id in collection.query_ids:
        assert collection.positives[query_id]
        assert all(d in collection.doc_index for d in collection.positives[query_id])
        assert not set(collection.negatives.get(query_id, ())) & set(collection.positives[query_id])


BEIR_FILES = {"corpus.jsonl": CORPUS, "queries.jsonl": QUERIES, "qrels.tsv": QRELS}


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl", "qrels.tsv", "p.jsonl", "p.json", "p.csv",
                                  "p.tsv", "p.parquet"])
@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes_load_or_raise_data_error(name: str, data: bytes) -> None:
    if name.endswith(".parquet"):
        data = b"PAR1" + data + b"PAR1"  # past the magic-number check, into the footer parser
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if name in BEIR_FILES:
            beir_folder(root, **{name: data})
            check_loads_or_data_error(root)
        else:
            (root / name).write_bytes(data)
            check_loads_or_data_error(root / name)


@pytest.mark.parametrize("name", list(RECORDS))
@FUZZ
@given(data=st.data(), ascii_only=st.booleans(), as_array=st.booleans())
def test_random_json_records_load_or_raise_data_error(name: str, data: st.DataObject, ascii_only: bool,
                                                      as_array: bool) -> None:
    records = data.draw(RECORDS[name])
    lines = [json_line(pairs, ascii_only) for pairs in records]
    text = "[" + ",\n".join(lines) + "]" if as_array and name.endswith(".json") else "\n".join(lines) + "\n"
    # surrogatepass: unescaped (ascii_only False), a lone surrogate becomes the invalid UTF-8 a broken writer leaves
    raw = text.encode("utf-8", errors="surrogatepass")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if name in BEIR_FILES:
            beir_folder(root, **{name: raw})
            check_loads_or_data_error(root)
        else:
            (root / name).write_bytes(raw)
            check_loads_or_data_error(root / name)


# Ids of the queries and documents a fuzzed qrels row names: any character but a surrogate, spaces and tabs likely.
IDS = st.text(alphabet=st.characters(exclude_categories=("Cs",)) | st.sampled_from(["\t", " ", "q", "1"]),
              min_size=1, max_size=6)


@FUZZ
@given(rows=st.lists(st.tuples(IDS, IDS, st.one_of(IDS, st.integers(-2, 3).map(str), st.floats().map(str))),
                     min_size=1, max_size=6), header=st.booleans())
def test_random_qrels_rows_load_or_raise_data_error(rows: list[tuple[str, str, str]], header: bool) -> None:
    """Rows whose ids mostly exist, so the fuzz reaches the score, header and skip logic, not only "unknown id"."""
    text = ("query-id\tcorpus-id\tscore\n" if header else "") + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = [{"_id": q, "text": f"query {q}"} for q, _, _ in rows]
        docs = [{"_id": d, "text": f"document {d}"} for _, d, _ in rows]
        write(root, {"queries.jsonl": QUERIES + ids, "corpus.jsonl": CORPUS + docs, "qrels.tsv": text})
        check_loads_or_data_error(root)

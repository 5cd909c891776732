import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hnm_core.cli import main
from hnm_core.pool import load_pool

from .conftest import shared_dataset

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


@pytest.fixture
def tiny_models(tiny_bi_encoder_dir, tmp_path):
    """Flags that make a run use the tiny fixture model as miner and teacher, and a private cache."""
    return ["--model", str(tiny_bi_encoder_dir), "--teacher-model", str(tiny_bi_encoder_dir),
            "--cache-dir", str(tmp_path / "cache"), "--quiet", "--precision", "fp32"]


def test_pool_command_saves_a_loadable_pool(tiny_models, tmp_path, capsys):
    assert main(["pool", str(SAMPLE), "--out", str(tmp_path / "pool"), "--top-k", "20", *tiny_models[:2],
                 *tiny_models[4:]]) == 0
    pool = load_pool(tmp_path / "pool")
    assert pool.meta["settings"]["top_k"] == 20
    assert len(pool.collection.query_ids) == 42
    assert "Pool saved to" in capsys.readouterr().out


def test_mine_then_curate_then_diff(tiny_models, tmp_path, capsys):
    first = tmp_path / "round1"
    assert main(["mine", str(SAMPLE), "--out", str(first), "--negatives", "5", "--top-k", "30", "--skip-n", "0",
                 *tiny_models]) == 0
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["settings"]["negatives"] == 5 and manifest["settings"]["top_k"] == 30
    assert manifest["teacher"]["kind"] == "bi-encoder"
    triplets = pd.read_parquet(first / "triplet.parquet")
    assert list(triplets.columns) == ["anchor", "positive", "negative"] and len(triplets) > 0
    out = capsys.readouterr().out
    assert "got the full 5 negatives" in out

    # refused without --overwrite, with the fix in one line on stderr
    assert main(["mine", str(SAMPLE), "--out", str(first), *tiny_models]) == 2
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and len(err.splitlines()) == 1

    # re-curate the saved pool: --config replays negatives=5, the flag changes skip-n
    second = tmp_path / "round2"
    assert main(["curate", str(first), "--out", str(second), "--config", str(first / "manifest.json"),
                 "--skip-n", "3", "--relative-margin", "off", "--quiet"]) == 0
    replay = json.loads((second / "manifest.json").read_text())
    assert replay["settings"]["negatives"] == 5
    assert replay["settings"]["skip_n"] == 3 and replay["settings"]["relative_margin"] is None
    assert replay["counts"]["skipped"] > 0 and manifest["counts"]["skipped"] == 0

    capsys.readouterr()
    assert main(["diff", str(first), str(second)]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["diff", str(first), str(second), "--json"]) == 0
    assert "jaccard" in json.loads(capsys.readouterr().out)


def test_curate_samples_with_the_pools_seed_unless_told_otherwise(tiny_models, tmp_path):
    mined = tmp_path / "mined"
    assert main(["mine", str(SAMPLE), "--out", str(mined), "--sources", "bm25", "--seed", "7", "--sampling", "random",
                 *tiny_models]) == 0
    for flags, seed in (([], 7), (["--seed", "3"], 3)):
        out = tmp_path / f"curated-{seed}"
        assert main(["curate", str(mined), "--out", str(out), "--sampling", "random", "--quiet", *flags]) == 0
        assert json.loads((out / "manifest.json").read_text())["settings"]["seed"] == seed


def test_bad_input_is_one_line_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"query": "a", "positive": "b"}\n{"query": "c", "positive": \n')
    assert main(["pool", str(bad), "--out", str(tmp_path / "o"), "--sources", "bm25", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pairs.jsonl:2" in err and "Fix:" in err


def test_bad_flag_value_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["curate", "x", "--out", "y", "--near-dup", "2"])
    assert exit_info.value.code == 2
    assert "above the maximum 1.0" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["mine", "audit"])
def test_a_bi_encoder_as_cross_encoder_teacher_is_refused_before_any_work(command, tmp_path):
    """The trap of issue 9: MiniLM loaded as a CrossEncoder gets a random head and would score for an hour. The
    command, run as a person runs it, stops in seconds with one line, before BM25 or encoding touch the cache."""
    cache = tmp_path / "cache"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hnm_core.cli", command, str(SAMPLE), "--out", str(tmp_path / "out"),
                           "--teacher", "cross-encoder", "--teacher-model", "all-MiniLM-L6-v2",
                           "--cache-dir", str(cache)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"hnm {command}: error: all-MiniLM-L6-v2 cannot be a cross-encoder teacher")
    assert "Fix: use --teacher bi-encoder" in done.stderr
    assert elapsed < 10, elapsed  # about 0.5 s here; mining the sample first would take far longer
    assert not cache.exists() or not any(cache.iterdir())
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_mine_cranfield_end_to_end_with_minilm(session_cache, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["mine", str(shared_dataset("cranfield")), "--out", str(out), "--cache-dir", str(session_cache),
                 "--quiet", "--formats", "triplet,ntuple_scores,flag,pool"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_queries"] == 225
    assert sum(manifest["counts"].values()) == len(pd.read_parquet(out / "pool.parquet"))
    assert manifest["n_full_quota"] + manifest["short_queries"] == 225
    flag = [json.loads(line) for line in (out / "flag.jsonl").read_text().splitlines()]
    assert all(len(r["neg"]) == len(r["neg_scores"]) for r in flag)

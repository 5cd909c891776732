"""Stage 9, prove: does a model trained on hnm's export retrieve better? The proof loop of docs/proof.md.

One collection, a training split and a test split (the queries both hold are left out of training); every arm
trains the same bi-encoder (setting `train_model`) with the same recipe (the `train` settings: train.train_model) and
seed, and is scored on the test split (evaluate.evaluate: nDCG@10, Recall@100, MRR@10):

    zero   the base model, untrained
    pairs  (query, labelled positive) pairs only: the other rows of a batch are the negatives
    naive  sentence-transformers' own `mine_hard_negatives` on those pairs with the base model: dense top-k, `negatives`
           per pair as an n-tuple, positives left out and no other false-negative rule (the protocol's st_mined arm)
    hnm    this curation's ntuple export of the training split (mine -> curate -> export with the given settings)

`seeds` repeats every trained arm; the table reports the mean and the sample standard deviation over seeds, because
single-seed differences of a few tenths of a point are run-to-run noise. `rounds` 2 re-mines the training split with
each seed's round-1 hnm model as the bi-encoder (and as the teacher when the teacher is the bi-encoder), trains on
from that checkpoint (arm `hnm-round2`), and compares the two exports (rounds.diff_rounds).

The output folder is a cache as much as a report: each trained model lives in arms/ under a key made of its training
file's digest, the base model's fingerprint, the recipe and the seed, so a rerun, or a table extended by an arm or a
seed, trains only what it lacks. Folder written (`out_dir`):

    prove.json    settings, per-seed figures, means and spreads, rows per arm, keys and model fingerprints
    table.txt     the printed table
    data/         the training files: pairs/, naive/, hnm/ (an hnm export with its labelled pool), hnm-round2-seed<s>/
    arms/         one model folder (train.py's) per trained arm and seed, named <arm>-seed<s>-<key>
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .data import Collection, beir_splits, counted, load_collection, normalize_text
from .errors import SettingsError
from .manifest import atomic_write_bytes, digest, package_versions, to_json
from .outdir import check_out, finish, read_marker, write_output
from .progress import Progress, no_progress
from .settings import SETTINGS, setting, validate

__all__ = ["ARMS", "HEADLINE", "ArmRun", "ArmSummary", "ProofResult", "prove", "summarise", "load_proof",
           "shared_queries", "without_queries", "scoring_splits"]

ARMS = setting("arms").choices
HEADLINE = ("ndcg@10", "recall@100", "mrr@10")
RECIPE = tuple(s.name for s in SETTINGS if s.stage == "train" and s.name != "train_model")
_NAMES = ("arms", "data", "prove.json", "table.txt")
STAGES = ("run", "pool", "teacher", "curate", "train", "eval", "prove")  # the settings a proof reads (its flags)


@dataclass(frozen=True)
class ArmRun:
    """One arm trained (or not, for `zero`) with one seed, and its figures on the test split."""

    arm: str
    seed: int
    rows: int  # training rows the model saw (0 for zero)
    metrics: dict[str, float]
    seconds: float  # training (as its manifest recorded it, also when reused) plus this call's evaluation
    trained_now: bool  # False when the model was found in arms/ (or the arm trains nothing)
    key: str  # what the arm is cached by: training file digest + base model + recipe + seed
    model: str  # the model evaluated: a folder under arms/, or the base model's name for zero
    fingerprint: str  # the trained model's run fingerprint (train.py's manifest); "" for zero
    training_file: str  # "" for zero


@dataclass(frozen=True)
class ArmSummary:
    """An arm over its seeds: the table's row."""

    arm: str
    seeds: tuple[int, ...]
    rows: int
    mean: dict[str, float]
    std: dict[str, float]  # sample standard deviation over seeds; 0 with one seed
    minutes: float  # mean minutes per seed

    def cells(self) -> list[str]:
        figure = lambda name: f"{self.mean[name]:.4f}" + (f" ± {self.std[name]:.4f}" if len(self.seeds) > 1 else "")
        return [self.arm, f"{self.rows:,}", *(figure(name) for name in HEADLINE), f"{self.minutes:.1f}"]


@dataclass(frozen=True)
class ProofResult:
    out_dir: Path
    settings: dict[str, Any]
    runs: tuple[ArmRun, ...]
    summaries: tuple[ArmSummary, ...]
    rounds: dict[str, Any] = field(default_factory=dict)  # seed -> diff_rounds figures, with rounds 2
    stopped: bool = False  # the run was stopped between two steps; `runs` holds what finished
    left_out: tuple[str, ...] = ()  # training queries every arm left out: the test split holds them too

    @property
    def trained(self) -> int:
        return sum(run.trained_now for run in self.runs)

    def table(self) -> str:
        head = ["arm", "rows trained", *HEADLINE, "minutes"]
        body = [s.cells() for s in self.summaries]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        line = lambda row: "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                                     enumerate(zip(row, widths)))
        seeds = ",".join(self.settings["seeds"])
        out = [f"{self.settings['train_model']} trained on {self.settings['train_split']}, scored on "
               f"{self.settings['test_split']} (seeds {seeds}; ± is the spread over seeds)"]
        if self.left_out:
            out.append(f"Left out of training: {counted(len(self.left_out), 'query', 'queries')} of "
                       f"{self.settings['train_split']} that {self.settings['test_split']} holds too.")
        out.append(line(head))
        out += [line(row) for row in body]
        if self.stopped:
            out.append("Stopped: the arms above finished; a rerun into the same folder trains only the rest.")
        return "\n".join(out)

    def to_json(self) -> bytes:
        return to_json({"settings": self.settings, "stopped": self.stopped, "trained_now": self.trained,
                        "left_out_of_training": list(self.left_out),
                        "arms": [asdict(s) for s in self.summaries], "runs": [asdict(r) for r in self.runs],
                        "rounds": self.rounds, "versions": package_versions()})


def summarise(runs: Sequence[ArmRun]) -> tuple[ArmSummary, ...]:
    """Per arm (in the order first seen): rows, mean and spread of every headline figure, minutes per seed."""
    order = list(dict.fromkeys(run.arm for run in runs))
    out = []
    for arm in order:
        mine = [run for run in runs if run.arm == arm]
        values = {name: np.array([run.metrics[name] for run in mine]) for name in HEADLINE}
        out.append(ArmSummary(arm, tuple(run.seed for run in mine), mine[0].rows,
                              {n: float(v.mean()) for n, v in values.items()},
                              {n: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for n, v in values.items()},
                              round(float(np.mean([run.seconds for run in mine])) / 60, 2)))
    return tuple(out)


def shared_queries(train: Collection, test: Collection) -> frozenset[str]:
    """The ids of `train`'s queries that `test` holds too (matched by normalised text: ids may differ between splits;
    BEIR's SciFact shares 2 of its 300 test queries with its train split, NFCorpus 4 of 323)."""
    seen = {normalize_text(text) for text in test.query_texts}
    return frozenset(qid for qid, text in zip(train.query_ids, train.query_texts) if normalize_text(text) in seen)


def without_queries(collection: Collection, query_ids: frozenset[str]) -> Collection:
    """`collection` less the queries `query_ids` (and their labels)."""
    keep = [i for i, qid in enumerate(collection.query_ids) if qid not in query_ids]
    return replace(collection, query_ids=tuple(collection.query_ids[i] for i in keep),
                   query_texts=tuple(collection.query_texts[i] for i in keep),
                   positives={q: d for q, d in collection.positives.items() if q not in query_ids},
                   negatives={q: d for q, d in collection.negatives.items() if q not in query_ids})


def scoring_splits(data: str | Path, train_split: str) -> list[str]:
    """The qrels splits of the BEIR folder `data` a proof that trains on `train_split` may score on: every other split
    that leaves `train_split` some query of its own (the queries they share are left out of training)."""
    splits = beir_splits(data)
    if train_split not in splits:
        return []
    train = load_collection(data, split=train_split)
    return [name for name in splits if name != train_split
            and len(shared_queries(train, load_collection(data, split=name))) < len(train.query_ids)]


def _check(values: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Every setting before any work; the seeds as whole numbers."""
    values = validate(dict(values))
    seeds = tuple(setting("seed").check(seed) for seed in values["seeds"])
    if len(set(seeds)) != len(seeds):
        raise SettingsError(f"seeds: {','.join(values['seeds'])} repeats a seed. Fix: give each seed once")
    if values["train_split"] == values["test_split"]:
        raise SettingsError(f"train_split and test_split are both {values['train_split']!r}: a proof scores on "
                            "queries it never trained on. Fix: pass --test-split with another split")
    if values["rounds"] == 2 and "hnm" not in values["arms"]:
        raise SettingsError("rounds: 2 re-mines with the hnm arm's model. Fix: add hnm to --arms")
    if values["loss"] == "margin_mse":
        raise SettingsError("loss: margin_mse trains on teacher scores, which the pairs and naive arms have not. "
                            "Fix: prove with --loss mnrl or cached_mnrl")
    return values, seeds



def _open(out_dir: str | Path, inputs: Sequence[Path]) -> Path:
    """The proof folder, created with its marker, or an earlier proof's folder to extend. Anything else (a folder
    hnm did not write, another kind of output) is refused by check_out."""
    out = check_out(out_dir, "proof", overwrite=True, inputs=inputs)
    if read_marker(out) is None:
        with write_output(out, "proof", inputs=inputs, pending=_NAMES):
            pass
    (out / "arms").mkdir(exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    return out


def _write_folder(folder: Path, name: str, table: pa.Table, manifest: dict[str, Any]) -> Path:
    """One training file plus its manifest.json as an hnm output folder (replaced when it is written again)."""
    with write_output(folder, "export", overwrite=True) as tmp:
        pq.write_table(table, tmp / name)
        atomic_write_bytes(tmp / "manifest.json", to_json(manifest))
    return folder / name


def _pairs_table(collection: Collection) -> pa.Table:
    """(query text, positive text) per labelled pair of the training split, in the collection's order."""
    anchors, positives = [], []
    for qid, text in zip(collection.query_ids, collection.query_texts):
        for doc in collection.positives.get(qid, ()):
            anchors.append(text)
            positives.append(collection.doc_texts[collection.doc_index[doc]])
    return pa.table({"anchor": anchors, "positive": positives})


def _naive(collection: Collection, pairs: Path, base: Any, negatives: int, batch_size: int, folder: Path) -> Path:
    """sentence-transformers' mine_hard_negatives on the pairs file, exactly as the protocol's st_mined arm (top-k,
    n-tuple, every labelled positive of the query excluded, no other rule); cached in `folder` by the pairs, the base
    model and `negatives`."""
    from .train import file_digest

    key = digest({"pairs": file_digest(pairs), "base": base.fingerprint, "negatives": negatives}, size=8)
    path = folder / "ntuple.parquet"
    manifest = folder / "manifest.json"
    if path.is_file() and manifest.is_file() and json.loads(manifest.read_text()).get("key") == key:
        return path
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    mined = mine_hard_negatives(Dataset.from_dict(pq.read_table(pairs).to_pydict()), base.model,
                                corpus=list(collection.doc_texts), num_negatives=negatives, sampling_strategy="top",
                                output_format="n-tuple", batch_size=batch_size, verbose=False)
    return _write_folder(folder, "ntuple.parquet", pa.Table.from_pydict(mined.to_dict()),
                         {"key": key, "method": "sentence_transformers.util.mine_hard_negatives",
                          "num_negatives": negatives, "sampling_strategy": "top", "base_model": base.fingerprint})


def _mine_export(collection: Collection, values: Mapping[str, Any], folder: Path, cache_dir: Any,
                 progress: Progress) -> Path:
    """Mine, curate and export the training split as `hnm mine` does (ntuple, plus the labelled pool for diff)."""
    from .curate import CurateParams, curate
    from .export import export
    from .pipeline import MiningParams, mine

    pool = mine(collection, MiningParams.from_settings(values), cache_dir=cache_dir, progress=progress)
    curation = curate(pool.frame, CurateParams.from_settings(values))
    export(pool, curation, folder, formats=("ntuple", "pool"), file_type="parquet", overwrite=True,
           extra_manifest={"command": "hnm prove"})
    return folder / "ntuple.parquet"


def prove(
    data: str | Path,
    out_dir: str | Path,
    values: Mapping[str, Any] | None = None,
    *,
    cache_dir: str | Path | None = None,
    progress: Progress = no_progress,
    stop: Callable[[], bool] = lambda: False,
) -> ProofResult:
    """Run the proof loop on the collection at `data` into `out_dir` (see the module docstring).

    values: settings by name (settings.py; the table's defaults for the rest): the mining and curation settings
        make the hnm arm, the `train` settings are every arm's recipe, `prove` picks the splits, arms, seeds, rounds.
    progress: reports stage "prove" (steps done of all), and the mining, training and encoding stages under it.
    stop: asked between steps; when it says True the loop ends there, keeping every finished arm in `out_dir`.
    """
    from .evaluate import evaluate, load_eval_collection
    from .models import load_bi_encoder, resolve_precision
    from .train import file_digest, train_model

    values, seeds = _check(values or {})
    check_out(out_dir, "proof", overwrite=True, inputs=[Path(data)])
    train = load_collection(data, split=values["train_split"])
    test = load_eval_collection(data, split=values["test_split"])
    shared = shared_queries(train, test)
    if len(shared) == len(train.query_ids):
        others = [s for s in scoring_splits(data, values["train_split"]) if s != values["test_split"]]
        raise SettingsError(
            f"every query of split {values['train_split']!r} is in split {values['test_split']!r} too, so nothing "
            "would be left to train on that the test does not score. Fix: score on a split of other queries"
            + (f" (--test-split {others[0]})" if others else ""))
    # A test query seen in training rewards memorising it: every arm trains without the queries the splits share.
    train = without_queries(train, shared)
    left_out = tuple(sorted(shared))
    out = _open(out_dir, [Path(data)])
    base = load_bi_encoder(values["train_model"], precision="fp32")
    # the precision a run trains in, not the one asked for: "auto" means bf16 on one machine and fp32 on another
    recipe = {name: values[name] for name in RECIPE} | {
        "train_precision": resolve_precision(values["train_precision"], base.device)}
    trained_arms = [arm for arm in values["arms"] if arm != "zero"]
    steps = ("zero" in values["arms"]) + (len(trained_arms) + (values["rounds"] == 2)) * len(seeds)
    done = 0
    progress("prove", 0, steps)
    runs: list[ArmRun] = []
    rounds: dict[str, Any] = {}

    def step() -> bool:
        """Save what has finished (a run interrupted later still leaves its table), report, and ask `stop`."""
        nonlocal done
        done += 1
        _save(ProofResult(out, _recorded(values), tuple(runs), summarise(runs), rounds, done < steps, left_out))
        progress("prove", min(done, steps), steps)
        return stop()

    def scored(arm: str, seed: int, model: str, rows: int, seconds: float, trained_now: bool, key: str,
               fingerprint: str, file: str) -> None:
        started = time.perf_counter()
        result = evaluate(model, test, precision=values["eval_precision"], batch_size=values["batch_size"],
                          cache_dir=cache_dir, progress=progress)
        runs.append(ArmRun(arm, seed, rows, {n: result.metrics[n] for n in HEADLINE},
                           round(seconds + time.perf_counter() - started, 1), trained_now, key, model, fingerprint,
                           file))

    def trained(arm: str, seed: int, file: Path, start: Any) -> Path:
        key = digest({"file": file_digest(file), "base": start.fingerprint, "recipe": recipe, "seed": seed}, size=8)
        folder = out / "arms" / f"{arm}-seed{seed}-{key}"
        marker = read_marker(folder) if folder.is_dir() else None
        now = marker is None or not marker.complete
        if now:
            train_model(file, folder, model=start.path, loss=values["loss"], epochs=values["epochs"],
                        batch_size=values["train_batch_size"], lr=values["lr"], warmup_ratio=values["warmup_ratio"],
                        seed=seed, max_pairs=values["max_pairs"], precision=recipe["train_precision"],
                        overwrite=True, extra_manifest={"proof": {"arm": arm, "key": key}}, progress=progress)
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        scored(arm, seed, str(folder), manifest["rows"], manifest["seconds"], now, key,
               manifest["fingerprint"], str(file))
        return folder

    stopped = False
    if "zero" in values["arms"]:
        scored("zero", seeds[0], values["train_model"], 0, 0.0, False, base.fingerprint, "", "")
        stopped = step()
    files: dict[str, Path] = {}
    for arm in trained_arms:
        if stopped:
            break
        if arm in ("pairs", "naive") and "pairs" not in files:
            pairs = _pairs_table(train)
            files["pairs"] = _write_folder(out / "data" / "pairs", "pairs.parquet", pairs,
                                           {"rows": pairs.num_rows, "split": values["train_split"]})
        if arm == "naive":
            files["naive"] = _naive(train, files["pairs"], base, values["negatives"], values["batch_size"],
                                    out / "data" / "naive")
        elif arm == "hnm":
            files["hnm"] = _mine_export(train, values, out / "data" / "hnm", cache_dir, progress)
        for seed in seeds:
            checkpoint = trained(arm, seed, files[arm], base)
            if stopped := step():
                break
            if arm == "hnm" and values["rounds"] == 2:
                rounds[str(seed)] = _round_two(train, values, seed, checkpoint, out, files["hnm"], trained, cache_dir,
                                               progress)
                if stopped := step():
                    break
    result = ProofResult(out, _recorded(values), tuple(runs), summarise(runs), rounds, stopped, left_out)
    _save(result)
    finish(out)
    return result


def _save(result: ProofResult) -> None:
    atomic_write_bytes(result.out_dir / "prove.json", result.to_json())
    atomic_write_bytes(result.out_dir / "table.txt", (result.table() + "\n").encode())


def load_proof(out_dir: str | Path) -> ProofResult | None:
    """The proof saved in `out_dir` (after every finished step, so also one that was stopped), or None when there
    is none yet."""
    path = Path(out_dir) / "prove.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    runs = tuple(ArmRun(**run) for run in saved["runs"])
    return ProofResult(Path(out_dir), saved["settings"], runs, summarise(runs), saved["rounds"], saved["stopped"],
                       tuple(saved.get("left_out_of_training", ())))


def _round_two(train: Collection, values: Mapping[str, Any], seed: int, checkpoint: Path, out: Path, first: Path,
               trained: Callable[..., Path], cache_dir: Any, progress: Progress) -> dict[str, Any]:
    """Re-mine with the round-1 model, train on from it, and the diff of the two exports."""
    from .models import load_bi_encoder
    from .rounds import diff_rounds

    again = {**values, "model": str(checkpoint)}
    if values["teacher"] == "bi-encoder":
        again["teacher_model"] = str(checkpoint)
    folder = out / "data" / f"hnm-round2-seed{seed}"
    file = _mine_export(train, again, folder, cache_dir, progress)
    trained("hnm-round2", seed, file, load_bi_encoder(str(checkpoint), precision="fp32"))
    return asdict(diff_rounds(first.parent, folder))


def _recorded(values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a proof reads, as prove.json records them (lists, not tuples)."""
    names = {s.name for s in SETTINGS if s.stage in STAGES}
    return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()
            if name in names}

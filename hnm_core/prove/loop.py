"""The proof loop itself: `prove(data, out_dir, values, variants=...)` (see the package docstring)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..data import Collection, load_collection
from ..errors import SettingsError
from ..manifest import digest
from ..models.memory import release_memory
from ..outputs.folder import check_out, finish, write_output
from ..outputs.marker import read_marker
from ..progress import Progress, no_progress
from ..settings import SETTINGS, setting, validate
from .files import HnmFiles, naive_file, pairs_table, write_folder
from .result import HEADLINE, ArmRun, ProofResult, pool_folds, save_proof, summarise
from .splits import (
    fold_queries,
    only_queries,
    scoring_splits,
    shared_queries,
    source_split,
    split_queries,
    without_queries,
)

__all__ = ["ARMS", "RECIPE", "STAGES", "VARIANT_STAGES", "prove"]

ARMS = setting("arms").choices
# What decides an arm's weights (how often a training saves itself does not).
RECIPE = tuple(s.name for s in SETTINGS if s.stage == "train" and s.name not in ("train_model", "checkpoint_minutes"))
_NAMES = ("arms", "data", "prove.json", "table.txt")
STAGES = ("run", "pool", "teacher", "curate", "train", "eval", "prove")  # the settings a proof reads (its flags)
VARIANT_STAGES = ("pool", "teacher", "curate")  # what a variant may change: how the hnm arm's file is made
_VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


def _check(values: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Every setting before any work; the seeds as whole numbers."""
    values = validate(dict(values))
    seeds = tuple(setting("seed").check(seed) for seed in values["seeds"])
    if len(set(seeds)) != len(seeds):
        raise SettingsError(f"seeds: {','.join(values['seeds'])} repeats a seed. Fix: give each seed once")
    one_split = values["split_queries"] is None and values["cross_fit"] is None
    if one_split and values["train_split"] == values["test_split"]:
        raise SettingsError(f"train_split and test_split are both {values['train_split']!r}: a proof scores on "
                            "queries it never trained on. Fix: pass --test-split with another split, or "
                            "--split-queries 0.5 to hold out half of its queries")
    if values["cross_fit"] is not None and values["split_queries"] is not None:
        raise SettingsError("cross_fit and split_queries both choose the test queries. Fix: pass one of them")
    if values["select_split"] is not None and values["select_queries"] is not None:
        raise SettingsError("select_split and select_queries both name queries to select on. Fix: pass one of them")
    if values["select_split"] in (values["train_split"], values["test_split"]):
        raise SettingsError(f"select_split {values['select_split']!r} is trained or scored on: a selection must see "
                            "neither. Fix: select on another split (dev), or with --select-queries 0.2")
    if values["rounds"] == 2 and "hnm" not in values["arms"]:
        raise SettingsError("rounds: 2 re-mines with the hnm arm's model. Fix: add hnm to --arms")
    if values["loss"] == "margin_mse":
        raise SettingsError("loss: margin_mse trains on teacher scores, which the pairs and naive arms have not. "
                            "Fix: prove with --loss mnrl or cached_mnrl")
    return values, seeds


def check_variants(variants: Mapping[str, Mapping[str, Any]] | None,
                   values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each variant's own settings (those of VARIANT_STAGES only), checked with the base settings they amend."""
    allowed = {s.name for s in SETTINGS if s.stage in VARIANT_STAGES}
    out: dict[str, dict[str, Any]] = {}
    for name, changes in (variants or {}).items():
        if not _VARIANT_NAME.fullmatch(name) or name in (*ARMS, "hnm-round2"):
            raise SettingsError(f"variant name {name!r} must be letters, digits, '_', '.' or '-' (40 at most) and "
                                f"none of {', '.join(ARMS)}. Fix: rename it")
        stray = sorted(set(changes) - allowed)
        if stray:
            raise SettingsError(f"variant {name!r} sets {', '.join(stray)}, which do not make the hnm arm's training "
                                "file (a variant changes pool, teacher and curate settings). Fix: set them for the "
                                "whole proof instead")
        checked = validate({**values, **changes})
        out[name] = {key: checked[key] for key in changes}
    if out and "hnm" not in values["arms"]:
        raise SettingsError("variants amend the hnm arm. Fix: add hnm to --arms")
    return out


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


def _queries(data: str | Path, values: Mapping[str, Any]) -> list[tuple[
        Collection, Collection, Collection | None, tuple[str, ...], dict[str, Any]]]:
    """Per fold, (train, test, select or None, training queries left out, a record of the splits) as `values` ask:
    one without cross_fit; with it, one per fold (its queries the test, the other folds' the training), each with
    the record of all. The collection is read once for all folds."""
    from .evaluate import load_eval_collection

    seed = values["seed"]
    if values["cross_fit"] is not None:
        source = source_split(data, values["train_split"])
        whole = load_collection(data, split=source)
        folds = fold_queries(whole, values["cross_fit"], seed)
        judged, scoring = frozenset().union(*folds), load_eval_collection(data, split=source)
        pairs = [(only_queries(whole, judged - fold), only_queries(scoring, fold)) for fold in folds]
        n = sum(map(len, folds))
        others = "the other fold" if len(folds) == 2 else f"the other {len(folds) - 1} folds"
        record = {"train": f"{others} of {source}", "test": f"each of {len(folds)} folds in turn ({n} queries in all)",
                  "cross_fit": {"split": source, "folds": len(folds), "seed": seed,
                                "test_queries": [sorted(f) for f in folds]}}
        left_out: tuple[str, ...] = ()
    elif values["split_queries"] is not None:
        source = source_split(data, values["train_split"])
        whole = load_collection(data, split=source)
        split = split_queries(whole, values["split_queries"], seed)
        train = only_queries(whole, split.kept)
        test = only_queries(load_eval_collection(data, split=source), split.held_out)
        record = {"train": f"{len(split.kept)} queries of {source}", "test": f"the other {len(split.held_out)}",
                  "split_queries": {"split": source, "fraction": split.fraction, "seed": seed,
                                    "test_queries": sorted(split.held_out)}}
        left_out = ()
        pairs = [(train, test)]
    else:
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
        record = {"train": values["train_split"], "test": values["test_split"]}
        pairs = [(train, test)]
    return [_selection(data, values, train, test, left_out, dict(record)) for train, test in pairs]


def _selection(data: str | Path, values: Mapping[str, Any], train: Collection, test: Collection,
               left_out: tuple[str, ...], record: dict[str, Any]) -> tuple[
        Collection, Collection, Collection | None, tuple[str, ...], dict[str, Any]]:
    """`_queries`' tuple for one (train, test) pair: the selection queries, if `values` ask for them, taken out of
    the training queries (and `record` amended to say so)."""
    from .evaluate import load_eval_collection

    seed = values["seed"]
    select = None
    if values["select_split"] is not None:
        select = load_eval_collection(data, split=values["select_split"])
        seen = shared_queries(select, test)
        if seen:
            raise SettingsError(f"select_split {values['select_split']!r} holds {len(seen)} of the test queries: the "
                                "selection must not look at them. Fix: select on a split of other queries, or with "
                                "--select-queries 0.2")
        train = without_queries(train, shared_queries(train, select))
        if not train.query_ids:
            raise SettingsError(f"every training query is in select_split {values['select_split']!r}, so nothing is "
                                "left to train on. Fix: select on a split of other queries, or with --select-queries")
        record["select"] = values["select_split"]
    elif values["select_queries"] is not None:
        split = split_queries(train, values["select_queries"], seed)
        select = only_queries(load_eval_collection(data, split=source_split(data, values["train_split"])),
                              split.held_out)
        train = only_queries(train, split.kept)
        record["select"] = f"{len(split.held_out)} training queries held out (select_queries {split.fraction})"
        record["train"] = f"{record['train']} less those {len(split.held_out)}"
    return train, test, select, left_out, record


def prove(
    data: str | Path,
    out_dir: str | Path,
    values: Mapping[str, Any] | None = None,
    *,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    cache_dir: str | Path | None = None,
    progress: Progress = no_progress,
    stop: Callable[[], bool] = lambda: False,
) -> ProofResult:
    """Run the proof loop on the collection at `data` into `out_dir` (see the package docstring).

    values: settings by name (settings.py; the table's defaults for the rest): the mining and curation settings
        make the hnm arm, the `train` settings are every arm's recipe, `prove` picks the splits, arms, seeds, rounds.
    variants: name -> pool, teacher or curate settings over `values`: each is one more arm like hnm, trained and
        scored alike; with `select_split` or `select_queries`, the best of hnm and its variants on those queries is
        the proof's selection (the test queries never decide it).
    progress: reports stage "prove" (steps done of all), and the mining, training and encoding stages under it.
    stop: asked between steps; when it says True the loop ends there, keeping every finished arm in `out_dir`.
    """
    from ..curate.rules import CurateParams
    from ..models.loading import load_bi_encoder, resolve_precision
    from .evaluate import evaluate
    from .train import file_digest, train_model

    values, seeds = _check(values or {})
    variants = check_variants(variants, values)
    check_out(out_dir, "proof", overwrite=True, inputs=[Path(data)])
    folds = values["cross_fit"]
    queries = _queries(data, values)  # every fold's splits, before any work
    left_out, splits = queries[0][3], queries[0][4]
    out = _open(out_dir, [Path(data)])
    base = load_bi_encoder(values["train_model"], precision="fp32")
    # the precision a run trains in, not the one asked for: "auto" means bf16 on one machine and fp32 on another
    recipe = {name: values[name] for name in RECIPE} | {
        "train_precision": resolve_precision(values["train_precision"], base.device)}
    trained_arms = [arm for arm in values["arms"] if arm != "zero"] + list(variants)
    steps = len(queries) * (("zero" in values["arms"]) + (len(trained_arms) + (values["rounds"] == 2)) * len(seeds))
    done = 0
    progress("prove", 0, steps)
    runs: list[ArmRun] = []
    rounds: dict[str, Any] = {}
    hnm_arms = {"hnm", *variants}

    auto_refs: dict[str, dict[str, Any]] = {}

    def result(stopped: bool) -> ProofResult:
        return ProofResult(out, _recorded(values), tuple(runs), summarise(pool_folds(runs, folds)), rounds, stopped,
                           left_out, splits, variants, dict(auto_refs))

    def step() -> bool:
        """Save what has finished (a run interrupted later still leaves its table), report, and ask `stop`."""
        nonlocal done
        done += 1
        release_memory()  # what the arm's mining, training and scoring freed (models/memory.py)
        save_proof(result(done < steps))
        progress("prove", min(done, steps), steps)
        return stop()

    stopped = False
    for fold, (train, test, select, _, _) in enumerate(queries):
        if stopped:
            break
        # a cross-fitted proof's runs, files and notes are its fold's; one split's are named as before
        tag = None if folds is None else fold
        named = (lambda name: name) if folds is None else (lambda name: f"{name}, fold {fold + 1}")
        data_dir = out / "data" if folds is None else out / "data" / f"fold-{fold + 1}"
        data_dir.mkdir(exist_ok=True)

        def scored(arm: str, seed: int, model: str, rows: int, seconds: float, trained_now: bool, key: str,
                   fingerprint: str, file: str) -> None:
            started = time.perf_counter()
            options = {"precision": values["eval_precision"], "batch_size": values["batch_size"],
                       "cache_dir": cache_dir, "progress": progress}
            on_test = evaluate(model, test, **options)
            chosen = (evaluate(model, select, **options).metrics["ndcg@10"]
                      if select is not None and arm in hnm_arms else None)
            runs.append(ArmRun(arm, seed, rows, {n: on_test.metrics[n] for n in HEADLINE},
                               round(seconds + time.perf_counter() - started, 1), trained_now, key, model,
                               fingerprint, file, tuple(float(x) for x in on_test.per_query["ndcg@10"]), chosen,
                               tag))

        def trained(arm: str, seed: int, file: Path, start: Any) -> Path:
            key = digest({"file": file_digest(file), "base": start.fingerprint, "recipe": recipe, "seed": seed},
                         size=8)
            folder = out / "arms" / f"{arm}-seed{seed}-{key}"
            marker = read_marker(folder) if folder.is_dir() else None
            now = marker is None or not marker.complete
            if now:
                train_model(file, folder, model=start.path, loss=values["loss"], epochs=values["epochs"],
                            batch_size=values["train_batch_size"], lr=values["lr"],
                            warmup_ratio=values["warmup_ratio"], seed=seed, max_pairs=values["max_pairs"],
                            precision=recipe["train_precision"], checkpoint_minutes=values["checkpoint_minutes"],
                            cache_dir=cache_dir, overwrite=True, extra_manifest={"proof": {"arm": arm, "key": key}},
                            progress=progress)
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            scored(arm, seed, str(folder), manifest["rows"], manifest["seconds"], now, key,
                   manifest["fingerprint"], str(file))
            return folder

        if "zero" in values["arms"]:
            scored("zero", seeds[0], values["train_model"], 0, 0.0, False, base.fingerprint, "", "")
            stopped = step()
        files: dict[str, Path] = {}
        hnm_files = HnmFiles(train, cache_dir, progress)
        for arm in trained_arms:
            if stopped:
                break
            if arm in ("pairs", "naive") and "pairs" not in files:
                pairs = pairs_table(train)
                files["pairs"] = write_folder(data_dir / "pairs", "pairs.parquet", pairs,
                                              {"rows": pairs.num_rows, "split": splits["train"]})
            if arm == "naive":
                files["naive"] = naive_file(train, files["pairs"], base, values["negatives"], values["batch_size"],
                                            data_dir / "naive")
            elif arm in hnm_arms:
                arm_values = {**values, **variants.get(arm, {})}
                files[arm] = hnm_files.export(arm_values, data_dir / arm)
                manifest = json.loads((files[arm].parent / "manifest.json").read_text(encoding="utf-8"))
                if "margin_ref_auto" in manifest and CurateParams.from_settings(arm_values).margins_on:
                    auto_refs[named(arm)] = manifest["margin_ref_auto"]
            for seed in seeds:
                checkpoint = trained(arm, seed, files[arm], base)
                if stopped := step():
                    break
                if arm == "hnm" and values["rounds"] == 2:
                    rounds[named(str(seed))] = _round_two(train, values, seed, checkpoint, data_dir, files["hnm"],
                                                          trained, cache_dir, progress)
                    if stopped := step():
                        break
    final = result(stopped)
    save_proof(final)
    finish(out)
    return final


def _round_two(train: Collection, values: Mapping[str, Any], seed: int, checkpoint: Path, data_dir: Path,
               first: Path, trained: Callable[..., Path], cache_dir: Any, progress: Progress) -> dict[str, Any]:
    """Re-mine with the round-1 model, train on from it, and the diff of the two exports."""
    from ..models.loading import load_bi_encoder
    from .rounds import diff_rounds

    again = {**values, "model": str(checkpoint)}
    if values["teacher"] == "bi-encoder":
        again["teacher_model"] = str(checkpoint)
    folder = data_dir / f"hnm-round2-seed{seed}"
    file = HnmFiles(train, cache_dir, progress).export(again, folder)
    trained("hnm-round2", seed, file, load_bi_encoder(str(checkpoint), precision="fp32"))
    return asdict(diff_rounds(first.parent, folder))


def _recorded(values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a proof reads, as prove.json records them (lists, not tuples)."""
    names = {s.name for s in SETTINGS if s.stage in STAGES}
    return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()
            if name in names}

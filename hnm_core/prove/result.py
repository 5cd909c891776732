"""What a proof found: one ArmRun per arm and seed, the table's rows (ArmSummary), the paired comparisons, and
prove.json / table.txt, written after every step so a stopped proof still has its table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..curate.margins import auto_sentence
from ..manifest import atomic_write_bytes, package_versions, to_json
from ..wording import counted
from .paired import Comparison, compare

__all__ = ["HEADLINE", "ArmRun", "ArmSummary", "ProofResult", "pool_folds", "summarise", "load_proof", "save_proof"]

HEADLINE = ("ndcg@10", "recall@100", "mrr@10")


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
    per_query: tuple[float, ...] = ()  # nDCG@10 of each test query (ProofResult.test_queries' order)
    selection: float | None = None  # nDCG@10 on the selection queries, where the proof selects a variant
    fold: int | None = None  # a cross-fitted proof's fold (0-based) whose queries this run scored; None otherwise


@dataclass(frozen=True)
class ArmSummary:
    """An arm over its seeds: the table's row."""

    arm: str
    seeds: tuple[int, ...]
    rows: int
    mean: dict[str, float]
    std: dict[str, float]  # sample standard deviation over seeds; 0 with one seed
    minutes: float  # mean minutes per seed
    selection: float | None = None  # mean nDCG@10 on the selection queries

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
    splits: dict[str, Any] = field(default_factory=dict)  # which queries were trained, selected and scored on
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant arm -> its settings over the base
    # hnm arm (base or variant) curated with a margin and margin_ref "auto" -> what auto chose (the export manifest's
    # margin_ref_auto: chose, positive_like_share, threshold)
    auto_refs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def trained(self) -> int:
        return sum(run.trained_now for run in self.runs)

    @cached_property
    def comparisons(self) -> tuple[Comparison, ...]:
        """Every arm against naive and against pairs, and each variant against the hnm arm it varies: paired
        bootstrap intervals of the nDCG@10 difference (computed once: the table, the JSON and the page read them)."""
        runs = pool_folds(self.runs, self.settings.get("cross_fit"))
        return compare(runs) + compare(runs, references=("hnm",), arms=tuple(self.variants))

    @property
    def selected(self) -> str | None:
        """The hnm arm (base or variant) with the best mean nDCG@10 on the selection queries, when the proof selects
        one: chosen without looking at the test queries."""
        scored = [s for s in self.summaries if s.selection is not None]
        return max(scored, key=lambda s: s.selection).arm if scored else None

    def table(self) -> str:
        head = ["arm", "rows trained", *HEADLINE, "minutes"]
        body = [s.cells() for s in self.summaries]
        out = [f"{self.settings['train_model']} trained on {self.splits.get('train', self.settings['train_split'])}, "
               f"scored on {self.splits.get('test', self.settings['test_split'])} (seeds "
               f"{','.join(self.settings['seeds'])}; ± is the spread over seeds)"]
        if self.left_out:
            out.append(f"Left out of training: {counted(len(self.left_out), 'query', 'queries')} of "
                       f"{self.settings['train_split']} that {self.settings['test_split']} holds too.")
        out += _aligned(head, body)
        out += self.auto_lines()
        comparisons = self.comparisons
        if comparisons:
            queries = comparisons[0].queries
            out += ["", f"Paired nDCG@10 differences in points, 95% bootstrap interval over the "
                        f"{counted(queries, 'test query', 'test queries')} (and the seeds); a win lies above zero:"]
            out += _aligned(["arms", "mean", "95% interval", "verdict", "seeds"], [c.cells() for c in comparisons])
        if self.selected is not None:
            scores = ", ".join(f"{s.arm} {s.selection:.4f}" for s in self.summaries if s.selection is not None)
            out += ["", f"Selected on {self.splits.get('select', 'the selection queries')}: {self.selected} "
                        f"(nDCG@10 there: {scores})."]
        if self.stopped:
            out.append("Stopped: the arms above finished; a rerun into the same folder trains only the rest.")
        return "\n".join(out)

    def auto_lines(self) -> list[str]:
        """Per hnm arm curated with margin_ref "auto", which positive it measured the margin from, and why."""
        return [f"{arm}: {auto_sentence(record['positive_like_share'])}" for arm, record in self.auto_refs.items()]

    def to_json(self) -> bytes:
        return to_json({"settings": self.settings, "stopped": self.stopped, "trained_now": self.trained,
                        "left_out_of_training": list(self.left_out), "splits": self.splits,
                        "variants": self.variants, "margin_ref_auto": self.auto_refs, "selected": self.selected,
                        "arms": [asdict(s) for s in self.summaries], "runs": [asdict(r) for r in self.runs],
                        "comparisons": [asdict(c) | {"verdict": c.verdict} for c in self.comparisons],
                        "rounds": self.rounds, "versions": package_versions()})


def _aligned(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    line = lambda row: "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                                 enumerate(zip(row, widths)))
    return [line(head), *(line(row) for row in body)]


def pool_folds(runs: Sequence[ArmRun], folds: int | None) -> tuple[ArmRun, ...]:
    """A cross-fitted proof's runs (`folds` folds) as one run per arm and seed over all its test queries: the folds'
    per-query figures end to end (in fold order), each headline figure the mean over those queries (the folds' means
    weighted by their queries), rows and seconds summed over the folds' models. An arm and seed some fold has not
    run yet (a stopped proof) is left out. Runs of a proof that is not cross-fitted (`folds` None) come back as
    they are."""
    if folds is None:
        return tuple(runs)
    groups: dict[tuple[str, int], dict[int, ArmRun]] = {}
    for run in runs:
        groups.setdefault((run.arm, run.seed), {})[run.fold] = run
    out = []
    for (arm, seed), by_fold in groups.items():
        if len(by_fold) < folds:
            continue
        parts = [by_fold[k] for k in range(folds)]
        weights = np.array([len(p.per_query) for p in parts], dtype=np.float64)
        joined = lambda name: ", ".join(dict.fromkeys(getattr(p, name) for p in parts))
        selections = [p.selection for p in parts]
        out.append(ArmRun(
            arm, seed, sum(p.rows for p in parts),
            {n: float(np.average([p.metrics[n] for p in parts], weights=weights)) for n in parts[0].metrics},
            round(sum(p.seconds for p in parts), 1), any(p.trained_now for p in parts), joined("key"),
            joined("model"), joined("fingerprint"), joined("training_file"),
            tuple(x for p in parts for x in p.per_query),
            None if None in selections else float(np.mean(selections))))
    return tuple(out)


def summarise(runs: Sequence[ArmRun]) -> tuple[ArmSummary, ...]:
    """Per arm (in the order first seen): rows, mean and spread of every headline figure, minutes per seed."""
    out = []
    for arm in dict.fromkeys(run.arm for run in runs):
        mine = [run for run in runs if run.arm == arm]
        values = {name: np.array([run.metrics[name] for run in mine]) for name in HEADLINE}
        selection = [run.selection for run in mine if run.selection is not None]
        out.append(ArmSummary(arm, tuple(run.seed for run in mine), mine[0].rows,
                              {n: float(v.mean()) for n, v in values.items()},
                              {n: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for n, v in values.items()},
                              round(float(np.mean([run.seconds for run in mine])) / 60, 2),
                              float(np.mean(selection)) if selection else None))
    return tuple(out)


def save_proof(result: ProofResult) -> None:
    atomic_write_bytes(result.out_dir / "prove.json", result.to_json())
    atomic_write_bytes(result.out_dir / "table.txt", (result.table() + "\n").encode())


def load_proof(out_dir: str | Path) -> ProofResult | None:
    """The proof saved in `out_dir` (after every finished step, so also one that was stopped), or None when there
    is none yet."""
    path = Path(out_dir) / "prove.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    runs = tuple(ArmRun(**{**run, "per_query": tuple(run.get("per_query", ()))}) for run in saved["runs"])
    pooled = pool_folds(runs, saved["settings"].get("cross_fit"))
    return ProofResult(Path(out_dir), saved["settings"], runs, summarise(pooled), saved["rounds"], saved["stopped"],
                       tuple(saved.get("left_out_of_training", ())), saved.get("splits", {}),
                       saved.get("variants", {}), saved.get("margin_ref_auto", {}))

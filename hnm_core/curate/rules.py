"""Stage 5, curate: label every pool row and sample negatives from the kept (hard) band.

`curate(frame, params)` is a pure, vectorised function of the pool table (hnm_core.schema) and `CurateParams`;
the app calls it on every slider move, so it never re-encodes, re-scores or touches the disk. Every rule counts what
it matched and what it labelled, as numbers and as sentences, so the UI can explain each drop without re-deriving it.

Rules, first match wins (a row gets exactly one label, in the order of `LABELS`):

    positive        the row is a labelled positive
    unlabelled_positive  a person marked it an unlabelled positive (hnm_core.curate.overrides): never a negative
    bad_negative    a person marked it a bad negative (hnm_core.curate.overrides): never a negative
                    (a person-confirmed negative skips the five rules below but `unscored`: hard when scored)
    false_negative  teacher score above `ceiling`, or within a margin of the query's positive score
    near_duplicate  cosine to one of the query's positives above `near_dup`
    same_cluster    same k-means cluster as one of the query's positives (`cluster_rule`)
    skipped         in a source's top `skip_n`
    unscored        the teacher did not score it (a cross-encoder scores only the top candidates)
    easy            teacher score below `floor`
    hard            everything else: the band negatives are sampled from

hnm_core.curate.reasons says, per row, which rule labelled it and with which numbers ("teacher 0.69 > ceiling 0.66"),
on demand (export, the rows a page shows), not inside `curate`, so a slider move pays only for the labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from ..errors import DataError, SettingsError
from ..schema import CURATE_COLUMNS, require_columns
from ..settings import defaults, setting
from ..wording import counted
from .margins import (
    AUTO_SHARE,
    REF_NAMES,
    MarginRef,
    auto_margin_ref,
    auto_sentence,
    margin_line,
    pool_share,
    positive_ref,
)
from .overrides import Overrides
from .sampling import best_first_key, grouped_order, rank_in_groups, sampling_order

__all__ = [
    "LABELS",
    "CurateParams",
    "Curation",
    "RuleCount",
    "ShortQuery",
    "curate",
    "combine",
    "SIMANS_A",
    "SIMANS_B",
]

Label = Literal[
    "positive", "unlabelled_positive", "bad_negative", "false_negative", "near_duplicate", "same_cluster", "skipped", "unscored", "easy", "hard"
]
LABELS: tuple[Label, ...] = (
    "positive", "unlabelled_positive", "bad_negative", "false_negative", "near_duplicate", "same_cluster", "skipped", "unscored", "easy", "hard"
)
_HARD = LABELS.index("hard")
# A person's verdicts are not rules of the settings: the summary leaves them out when there are none.
_CORRECTIONS = ("unlabelled_positive", "bad_negative")

# SimANS (Zhou et al., EMNLP 2022) samples with p ∝ exp(-a * (s - s_pos - b)^2). The paper's a is tuned for raw
# dot products spanning tens of units; our teacher_score is a cosine or a sigmoid in [0, 1], so a is scaled up:
# with a = 10 a negative 0.3 below the positive is drawn 0.4x as often as one at the positive's score.
SIMANS_A = 10.0
SIMANS_B = 0.0

_CURATE_SETTINGS = tuple(name for name in defaults("curate"))
_DEFAULTS = defaults()


@dataclass(frozen=True)
class CurateParams:
    """The `curate`-stage settings (see hnm_core/settings.py for each one's help) plus the seed and SimANS knobs."""

    ceiling: float | None = _DEFAULTS["ceiling"]
    relative_margin: float | None = _DEFAULTS["relative_margin"]
    absolute_margin: float | None = _DEFAULTS["absolute_margin"]
    margin_ref: MarginRef = _DEFAULTS["margin_ref"]
    skip_n: int = _DEFAULTS["skip_n"]
    cluster_rule: bool = _DEFAULTS["cluster_rule"]
    near_dup: float | None = _DEFAULTS["near_dup"]
    floor: float | None = _DEFAULTS["floor"]
    negatives: int = _DEFAULTS["negatives"]
    sampling: Literal["top", "random", "simans"] = _DEFAULTS["sampling"]
    seed: int = _DEFAULTS["seed"]
    simans_a: float = SIMANS_A
    """SimANS sharpness: larger draws more tightly around `s_pos + simans_b`. Scale by 1/range^2 for raw logits."""
    simans_b: float = SIMANS_B
    """SimANS offset of the peak from the positive's score (0 = favour negatives scored like the positive)."""

    def __post_init__(self) -> None:
        # Each settings-backed field goes through the table's own check, so the error names the accepted range.
        for name in (*_CURATE_SETTINGS, "seed"):
            object.__setattr__(self, name, setting(name).check(getattr(self, name)))
        for name in ("simans_a", "simans_b"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SettingsError(f"{name}: {value!r} is not a finite number")
            object.__setattr__(self, name, float(value))
        if self.simans_a <= 0:
            raise SettingsError(f"simans_a: {self.simans_a} must be above 0 (try {SIMANS_A})")

    @property
    def margins_on(self) -> bool:
        """Whether a margin rule (relative or absolute) is on: what margin_ref, and so "auto", applies to."""
        return self.relative_margin is not None or self.absolute_margin is not None

    @classmethod
    def from_settings(cls, values: dict[str, Any], *, simans_a: float = SIMANS_A,
                      simans_b: float = SIMANS_B) -> CurateParams:
        """Build from a dict as `settings.validate()` returns it; settings of other stages are ignored."""
        picked = {name: values[name] for name in (*_CURATE_SETTINGS, "seed") if name in values}
        return cls(**picked, simans_a=simans_a, simans_b=simans_b)


class RuleCount(NamedTuple):
    """One rule's outcome: `count` rows got `label`; the rule `matched` that many candidates before precedence."""

    label: Label
    count: int
    matched: int
    sentence: str


class ShortQuery(NamedTuple):
    """A query whose hard band holds fewer negatives than the quota: it keeps `got`, `wanted` were asked for."""

    query_id: str
    got: int
    wanted: int


@dataclass(frozen=True, eq=False)
class Curation:
    """Labels and the sampled negatives, aligned with the rows of the frame `curate` was given (by position).

    `selected` marks the sampled negatives; `neg_rank` numbers them 1..n within their query by teacher score
    (highest first, ties by fused rank) whatever the sampling strategy, 0 for unselected rows. `params` are the
    settings it was computed with (export writes them into the manifest); `overrides` the verdicts it applied.
    """

    labels: pd.Categorical
    selected: np.ndarray
    neg_rank: np.ndarray
    counts: tuple[RuleCount, ...]
    short_queries: tuple[ShortQuery, ...]
    n_queries: int
    n_full_quota: int
    params: CurateParams
    overrides: Overrides = Overrides()
    auto_share: float | None = None
    """With margin_ref "auto": the pool's `positive_like_share`, which chose the reference; None otherwise."""

    @property
    def margin_ref(self) -> MarginRef:
        """The positive reference the margins used: the setting's, or the one "auto" chose."""
        return self.params.margin_ref if self.auto_share is None else auto_margin_ref(self.auto_share)

    @property
    def auto_note(self) -> str | None:
        """With margin_ref "auto" and a margin on: which reference it chose and why, in a sentence; None otherwise."""
        return None if self.auto_share is None or not self.params.margins_on else auto_sentence(self.auto_share)

    @property
    def auto_record(self) -> dict[str, Any] | None:
        """With margin_ref "auto", what the manifest and the audit report record: the reference it chose, the share
        it chose by and the threshold; None otherwise."""
        if self.auto_share is None:
            return None
        return {"chose": self.margin_ref, "positive_like_share": self.auto_share, "threshold": AUTO_SHARE}

    @property
    def n_selected(self) -> int:
        return int(self.selected.sum())

    def count(self, label: Label) -> int:
        """Rows that got `label`."""
        return self.counts[LABELS.index(label)].count

    def summary(self) -> list[str]:
        """Human sentences: one per rule, then how many queries got their full quota."""
        out = [rc.sentence for rc in self.counts if rc.label not in _CORRECTIONS or self.overrides]
        confirmed = self.overrides.count("confirmed_negative")
        if confirmed:
            out.append(f"You confirmed {counted(confirmed, 'negative')}: no rule drops a confirmed negative.")
        wanted = self.params.negatives
        short = len(self.short_queries)
        line = f"{self.n_full_quota:,} of {self.n_queries:,} queries got the full {wanted} negatives"
        if short:
            line += f"; {short:,} got fewer and keep what they have (see short_queries)"
        out.append(line + ".")
        return out


def curate(frame: pd.DataFrame, params: CurateParams, overrides: Overrides | None = None, *,
           auto_share: float | None = None) -> Curation:
    """Label every row of a pool table and sample `params.negatives` negatives per query from the hard band.
    `overrides`: a person's verdicts (hnm_core.curate.overrides), applied before every rule but the labelled positives.
    `auto_share`: with margin_ref "auto", the `positive_like_share` that chooses the reference, for a frame that is
    part of a larger pool (a run of its queries) or stands for one (the audit's hidden split); by default `frame`'s."""
    require_columns(frame, CURATE_COLUMNS, "pool table",
                    fix="build the pool with hnm_core.pool (schema in hnm_core/schema.py)")
    codes, uniques = pd.factorize(frame["query_id"])
    if len(codes) and codes.min() < 0:
        raise DataError("pool table", f"{int((codes < 0).sum())} rows have no query_id.",
                        fix="give every row the id of its query")
    n_q = len(uniques)
    is_pos = frame["is_positive"].to_numpy(dtype=bool)
    cand = ~is_pos
    # Thresholds are compared in float32, the column's own precision, so a score equal to a threshold typed in
    # the UI (0.3) is not "above" it through float64 rounding (float32(0.3) > 0.3 in float64).
    score = frame["teacher_score"].to_numpy(dtype=np.float32, na_value=np.nan)
    if params.margin_ref == "auto" and auto_share is None:
        auto_share = pool_share(codes, n_q, is_pos, score)
    elif params.margin_ref != "auto":
        auto_share = None
    ref = positive_ref(codes, n_q, is_pos, score,
                       params.margin_ref if auto_share is None else auto_margin_ref(auto_share))

    false_neg = np.zeros(len(frame), dtype=bool)
    if params.ceiling is not None:
        false_neg |= score > np.float32(params.ceiling)
    margin = margin_line(ref, params)
    if margin is not None:
        false_neg |= score > margin[codes].astype(np.float32)
    false_neg &= cand

    if params.near_dup is not None:
        near_dup = cand & (frame["pos_sim_max"].to_numpy(dtype=np.float32, na_value=np.nan)
                           > np.float32(params.near_dup))
    else:
        near_dup = np.zeros(len(frame), dtype=bool)
    same_cluster = (_same_cluster(codes, is_pos, frame["cluster"].to_numpy(dtype=np.int64)) & cand
                    if params.cluster_rule else np.zeros(len(frame), dtype=bool))
    if params.skip_n > 0:
        bm25 = frame["bm25_rank"].to_numpy(dtype=np.int64)
        dense = frame["dense_rank"].to_numpy(dtype=np.int64)
        skipped = cand & (((bm25 > 0) & (bm25 <= params.skip_n)) | ((dense > 0) & (dense <= params.skip_n)))
    else:
        skipped = np.zeros(len(frame), dtype=bool)
    unscored = cand & np.isnan(score)
    easy = cand & (score < np.float32(params.floor)) if params.floor is not None else np.zeros(len(frame), bool)

    overrides = overrides if overrides is not None else Overrides()
    verdicts = overrides.row_verdicts(frame, codes, uniques)
    # A person-confirmed negative (verdict 3) is exempt from every rule of the settings; an unscored one stays
    # unscored, since the sampler orders the hard band by teacher score.
    ruled = ~(verdicts == 3)
    rules = (is_pos, cand & (verdicts == 1), cand & (verdicts == 2), false_neg & ruled, near_dup & ruled,
             same_cluster & ruled, skipped & ruled, unscored, easy & ruled)
    label_codes = np.select(rules, np.arange(len(rules), dtype=np.int8), default=np.int8(_HARD)).astype(np.int8)
    labels = pd.Categorical.from_codes(label_codes, categories=list(LABELS))

    hard = np.flatnonzero(label_codes == _HARD)
    fused = frame["fused_rank"].to_numpy(dtype=np.int64)
    order = sampling_order(frame, hard, codes, uniques, score, fused, ref, params)
    hard_per_query = np.bincount(codes[hard], minlength=n_q)
    picked = order[rank_in_groups(codes[order], hard_per_query) < params.negatives]

    selected = np.zeros(len(frame), dtype=bool)
    selected[picked] = True
    neg_rank = np.zeros(len(frame), dtype=np.int32)
    by_score = picked[grouped_order(codes[picked], best_first_key(score[picked], fused[picked]))]
    neg_rank[by_score] = rank_in_groups(codes[by_score], np.bincount(codes[picked], minlength=n_q)) + 1

    label_counts = np.bincount(label_codes, minlength=len(LABELS))
    matched = [int(m.sum()) for m in rules] + [int(label_counts[_HARD])]
    counts = tuple(
        RuleCount(label, int(label_counts[i]), matched[i],
                  _sentence(label, int(label_counts[i]), matched[i], params, len(picked), auto_share))
        for i, label in enumerate(LABELS)
    )
    got = np.minimum(hard_per_query, params.negatives)
    short_idx = np.flatnonzero(got < params.negatives)
    short = tuple(ShortQuery(str(uniques[i]), int(got[i]), params.negatives) for i in short_idx)
    return Curation(labels=labels, selected=selected, neg_rank=neg_rank, counts=counts, short_queries=short,
                    n_queries=n_q, n_full_quota=n_q - len(short), params=params, overrides=overrides,
                    auto_share=auto_share)


def combine(parts: Sequence[Curation]) -> Curation:
    """One Curation from the curations of consecutive runs of whole queries (rows in order): what `curate` gives for
    all the rows at once, since a query's labels and draws depend on its own rows alone (the Ray engine's merge).
    The parts were curated with the same verdicts (each applies those of its own queries) and, with margin_ref "auto",
    the whole pool's `auto_share`."""
    params, auto_share = parts[0].params, parts[0].auto_share
    selected = np.concatenate([p.selected for p in parts])
    n_selected = int(selected.sum())
    counts = []
    for i, label in enumerate(LABELS):
        count, matched = sum(p.counts[i].count for p in parts), sum(p.counts[i].matched for p in parts)
        counts.append(RuleCount(label, count, matched,
                                _sentence(label, count, matched, params, n_selected, auto_share)))
    codes = np.concatenate([p.labels.codes for p in parts])
    return Curation(labels=pd.Categorical.from_codes(codes, categories=list(LABELS)), selected=selected,
                    neg_rank=np.concatenate([p.neg_rank for p in parts]), counts=tuple(counts),
                    short_queries=tuple(q for p in parts for q in p.short_queries),
                    n_queries=sum(p.n_queries for p in parts), n_full_quota=sum(p.n_full_quota for p in parts),
                    params=params, overrides=parts[0].overrides, auto_share=auto_share)


def _same_cluster(codes: np.ndarray, is_pos: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Rows whose cluster is the cluster of one of their query's positives (cluster -1 = not computed, never)."""
    valid = cluster >= 0
    if not valid.any():
        return np.zeros(len(codes), dtype=bool)
    width = int(cluster.max()) + 1
    keys = codes * width + np.where(valid, cluster, 0)
    pos_keys = np.unique(keys[is_pos & valid])
    if len(pos_keys) == 0:
        return np.zeros(len(codes), dtype=bool)
    at = np.minimum(np.searchsorted(pos_keys, keys), len(pos_keys) - 1)
    return valid & (pos_keys[at] == keys)


def _sentence(label: Label, count: int, matched: int, params: CurateParams, n_selected: int,
              auto_share: float | None) -> str:
    """The UI's line for one rule."""
    ref = REF_NAMES[params.margin_ref if auto_share is None else auto_margin_ref(auto_share)]
    if label == "positive":
        return f"{counted(count, 'labelled positive')} (paired with the negatives, never used as one)."
    if label in _CORRECTIONS:
        return f"You marked {counted(count, label.replace('_', ' '))}; never exported as negatives."
    if label == "false_negative":
        parts = []
        if params.ceiling is not None:
            parts.append(f"teacher score above {params.ceiling:g}")
        if params.relative_margin is not None:
            parts.append(f"teacher score above the query's {ref} positive score less {params.relative_margin:.0%}")
        if params.absolute_margin is not None:
            parts.append(f"teacher score above the query's {ref} positive score less {params.absolute_margin:g}")
        if not parts:
            return "Teacher-score rules (ceiling, margins) are off."
        text = f"Flagged {counted(count, 'candidate')} as likely false negatives ({' or '.join(parts)})."
        if auto_share is not None and params.margins_on:
            text += " " + auto_sentence(auto_share)
    elif label == "near_duplicate":
        if params.near_dup is None:
            return "Near-duplicate rule is off."
        text = f"Dropped {counted(count, 'near-duplicate')} of a positive (cosine above {params.near_dup:g})."
    elif label == "same_cluster":
        if not params.cluster_rule:
            return "Same-cluster rule is off."
        text = f"Dropped {counted(count, 'candidate')} in the same k-means cluster as one of the query's positives."
    elif label == "skipped":
        if params.skip_n == 0:
            return "Skip-top-N is off."
        text = f"Skipped {counted(count, 'candidate')} ranked in a source's top {params.skip_n}."
    elif label == "unscored":
        text = f"Left out {counted(count, 'candidate')} the teacher did not score."
    elif label == "easy":
        if params.floor is None:
            return "Easy floor is off."
        text = f"Dropped {counted(count, 'easy candidate')} (teacher score below {params.floor:g})."
    else:
        return (f"{counted(count, 'candidate')} in the hard band; {n_selected:,} sampled as negatives "
                f"({params.sampling}, up to {params.negatives} per query).")
    if matched > count:
        text = text[:-1] + f"; the rule matched {matched - count:,} more that an earlier rule had labelled."
    return text

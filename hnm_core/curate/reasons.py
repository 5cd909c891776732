"""Why each pool row got its label: the rule of hnm_core.curate.rules that fired first, with its numbers.

    reasons(frame, curation)   ->  "teacher 0.69 > ceiling 0.66", "same k-means cluster 8 as positive d031",
                                   "rank 3 in dense top-10 (skip-N 10)", "hard band, rank 4 of 121: selected", ...

Computed on demand (the `pool` export, the rows a page shows), never inside `curate`: a slider move pays only for the
labels. It re-derives each rule's numbers with curate's own helpers, so the text always matches the label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from .margins import REF_NAMES, MarginRef, positive_ref
from .rules import LABELS, CurateParams, Curation, Label
from .sampling import best_first_key, grouped_order, rank_in_groups

__all__ = ["reasons"]


def reasons(frame: pd.DataFrame, curation: Curation, rows: tuple[int, int] | None = None) -> np.ndarray:
    """Per row, why `curation` labelled it so: the rule that fired first, with its numbers, e.g.
    "teacher 0.69 > ceiling 0.66", "same k-means cluster 8 as positive d031", "hard band, rank 4 of 121: selected".

    frame: the pool table `curation` was computed from (rows aligned by position).
    rows: (start, end) to explain only that slice; it must hold whole queries (a query slice of the pool), since the
        margins, clusters and hard-band ranks are per query.
    Returns an object array of strings, one per row (of the slice).
    """
    if len(curation.labels) != len(frame):
        raise DataError("pool table", f"the curation has {len(curation.labels):,} rows but the table "
                        f"{len(frame):,}.", fix="explain a curation with the frame it was computed from")
    start, end = rows if rows is not None else (0, len(frame))
    part = frame.iloc[start:end]
    label = np.asarray(curation.labels.codes[start:end])
    selected = curation.selected[start:end]
    params = curation.params
    codes, uniques = pd.factorize(part["query_id"])
    n_q = len(uniques)
    is_pos = part["is_positive"].to_numpy(dtype=bool)
    score = part["teacher_score"].to_numpy(dtype=np.float32, na_value=np.nan)
    doc_ids = part["doc_id"].to_numpy(dtype=object)
    out = np.empty(len(part), dtype=object)

    def rows_of(name: Label) -> np.ndarray:
        return np.flatnonzero(label == LABELS.index(name))

    out[rows_of("positive")] = "labelled positive"

    query_ids = part["query_id"].to_numpy(dtype=object)
    for name in ("unlabelled_positive", "bad_negative"):
        for row in rows_of(name).tolist():
            found = curation.overrides.get(query_ids[row], doc_ids[row])
            note = f" ({found.note})" if found is not None and found.note else ""
            out[row] = f"corrected by you: {name.replace('_', ' ')}{note}"

    fn = rows_of("false_negative")
    if len(fn):
        out[fn] = _false_negative_reasons(fn, codes, n_q, is_pos, score, params, curation.margin_ref)

    nd = rows_of("near_duplicate")
    if len(nd):
        cosine = part["pos_sim_max"].to_numpy(dtype=np.float32, na_value=np.nan)[nd]
        n_pos = np.bincount(codes[is_pos], minlength=n_q)
        # pos_sim_max keeps only the highest cosine, not which positive it was: name it when there is just one.
        only = np.full(n_q, None, dtype=object)
        only[codes[is_pos]] = doc_ids[is_pos]
        only[n_pos != 1] = None
        out[nd] = [f"cosine {c} to {'its nearest positive' if d is None else f'positive {d}'} "
                   f"(near-duplicate > {t})"
                   for (c, t, _), d in zip((_pair(c, params.near_dup, 3) for c in cosine), only[codes[nd]])]

    sc = rows_of("same_cluster")
    if len(sc):
        cluster = part["cluster"].to_numpy(dtype=np.int64)
        width = int(cluster.max()) + 1
        pos_rows = np.flatnonzero(is_pos & (cluster >= 0))
        pos_keys = codes[pos_rows].astype(np.int64) * width + cluster[pos_rows]
        order = np.argsort(pos_keys, kind="stable")  # the query's first positive in that cluster
        at = np.searchsorted(pos_keys[order], codes[sc].astype(np.int64) * width + cluster[sc])
        match = doc_ids[pos_rows[order[at]]]
        out[sc] = [f"same k-means cluster {c} as positive {d}" for c, d in zip(cluster[sc], match)]

    sk = rows_of("skipped")
    if len(sk):
        n = params.skip_n
        bm25 = part["bm25_rank"].to_numpy(dtype=np.int64)[sk]
        dense = part["dense_rank"].to_numpy(dtype=np.int64)[sk]
        out[sk] = [" and ".join(([f"rank {b} in BM25 top-{n}"] if 0 < b <= n else [])
                                + ([f"rank {d} in dense top-{n}"] if 0 < d <= n else [])) + f" (skip-N {n})"
                   for b, d in zip(bm25.tolist(), dense.tolist())]

    un = rows_of("unscored")
    if len(un):
        why = "outside teacher_top_n" if (~np.isnan(score)).any() else "no teacher has scored this pool"
        out[un] = f"not scored by the teacher ({why})"

    ez = rows_of("easy")
    if len(ez):
        out[ez] = ["teacher {} < floor {}".format(*_pair(s, params.floor)) for s in score[ez].tolist()]

    hd = rows_of("hard")
    if len(hd):
        fused = part["fused_rank"].to_numpy(dtype=np.int64)
        hd_codes = codes[hd]
        ordered = hd[grouped_order(hd_codes, best_first_key(score[hd], fused[hd]))]
        size = np.bincount(hd_codes, minlength=n_q)
        rank = np.empty(len(part), dtype=np.int64)
        rank[ordered] = rank_in_groups(codes[ordered], size) + 1
        quota = params.negatives
        how = {"top": "", "random": " (random draw)", "simans": " (SimANS draw)"}[params.sampling]
        kept = f": selected{how}"
        dropped = (f": not sampled (quota {quota})" if params.sampling == "top"
                   else f": not drawn ({params.sampling}, quota {quota})")
        out[hd] = [f"hard band, rank {r} of {n}{kept if s else dropped}"
                   for r, n, s in zip(rank[hd].tolist(), size[hd_codes].tolist(), selected[hd].tolist())]
        if curation.overrides.count("confirmed_negative"):
            for row in hd.tolist():
                found = curation.overrides.get(query_ids[row], doc_ids[row])
                if found is not None and found.verdict == "confirmed_negative":
                    out[row] = f"confirmed a negative by you, kept whatever the rules say; {out[row]}"
    return out


def _false_negative_reasons(rows: np.ndarray, codes: np.ndarray, n_q: int, is_pos: np.ndarray, score: np.ndarray,
                            params: CurateParams, margin_ref: MarginRef) -> list[str]:
    """The false-negative rule that fired for each of `rows`: the ceiling when it did, else the lower margin line
    (the one the score is above; curate flags a row above either)."""
    s = score[rows]
    by_ceiling = (s > np.float32(params.ceiling) if params.ceiling is not None
                  else np.zeros(len(rows), dtype=bool))
    ref = positive_ref(codes, n_q, is_pos, score, margin_ref)[codes[rows]]
    lines = []  # (threshold per row, how it is written, which margin)
    if params.relative_margin is not None:
        lines.append((ref - np.abs(ref) * params.relative_margin, f"{params.relative_margin * 100:g}%", "relative"))
    if params.absolute_margin is not None:
        lines.append((ref - params.absolute_margin, f"{params.absolute_margin:g}", "absolute"))
    if lines:
        which = np.argmin(np.stack([line for line, _, _ in lines]), axis=0)  # ties: the relative margin
        line = np.choose(which, [line for line, _, _ in lines])
    else:
        which = line = np.zeros(len(rows))
    ref_name = REF_NAMES[margin_ref]
    out = []
    for value, ceiling, r, t, w in zip(s.tolist(), by_ceiling.tolist(), ref.tolist(), line.tolist(), which.tolist()):
        if ceiling:
            out.append("teacher {} > ceiling {}".format(*_pair(value, params.ceiling)))
            continue
        shown, _, d = _pair(value, t)
        _, by, kind = lines[w]
        out.append(f"teacher {shown} > {ref_name} positive {r:.{d}f} - {by} = {t:.{d}f} ({kind} margin)")
    return out


def _pair(value: float, threshold: float, digits: int = 2) -> tuple[str, str, int]:
    """`value` and the `threshold` it crossed with the fewest decimals (at least `digits`) that tell them apart, so a
    reason never reads "0.70 > 0.70", and that number of decimals. The threshold drops trailing zeros past the
    second decimal: a setting reads as typed (0.98, not 0.980)."""
    for d in range(digits, 9):
        a, b = f"{value:.{d}f}", f"{threshold:.{d}f}"
        if a != b:
            break
    return a, _trim(b), d


def _trim(number: str) -> str:
    head, _, tail = number.partition(".")
    return f"{head}.{tail.rstrip('0').ljust(2, '0')}" if tail else number

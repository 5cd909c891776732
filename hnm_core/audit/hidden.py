"""Mining with hidden positives: hide part of each query's labelled positives (leak.hide_positives) and mine the rest
as if the hidden ones were unknown (mine_hidden_split); a trained teacher is vetted first, so one that saw a hidden
positive while training is refused (vet_teacher), or trained here on the visible positives only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from ..data import Collection
from ..errors import DataError, SettingsError
from ..models.files import CROSS_FIT_MANIFEST, pair_key, read_json, resolve_model_path
from ..models.loading import LoadedModel
from ..pool import Pool
from ..progress import Progress, no_progress
from ..wording import counted
from .leak import (
    HiddenSplit,
    hide_positives,
)

__all__ = ["SplitPool", "vet_teacher", "mine_hidden_split"]


class SplitPool(NamedTuple):
    """A pool mined with the split's hidden positives left out (`split.apply(collection)`), and the split."""

    pool: Pool
    split: HiddenSplit


def vet_teacher(kind: str, name: str, path: str, collection: Collection, split: HiddenSplit, *,
                miner: str | None = None, members: Sequence[str] = ()) -> dict[str, Any]:
    """Which teacher scores the audit, and proof that it never saw the positives the audit hides; the report's
    "teacher" entry. A teacher trained on them would grade the hidden positives from memory and "catch" them for
    free, so a cross-fitted teacher folder (hnm train-teacher) whose teacher.json lists any hidden (query, positive)
    pair among its trained positives is refused (SettingsError with the fix), as is one that does not list them; a
    hidden pair with the same two texts as a visible one does not count (the visible labels hold it).
    So is a cross-fitted bi-encoder teacher (hnm train-teacher --teacher-kind bi-encoder). Another bi-encoder is
    taken as it is (the default is the miner itself, which is not trained here); so is a
    cross-encoder that hnm did not train, whose training data cannot be checked (its summary says so). An ensemble
    (`members`) is vetted by its cross-encoder member, `name` and `path`; its other members are the pool's own
    scores."""
    if kind == "ensemble":
        listed = ", ".join(members)
        if "cross-encoder" not in members:
            return {"kind": kind, "model": None, "checked": None,
                    "summary": f"teacher: ensemble of {listed} (the pool's own scores, nothing trained)"}
        entry = vet_teacher("cross-encoder", name, path, collection, split)
        return {**entry, "kind": kind, "members": list(members),
                "summary": f"teacher: ensemble of {listed}, whose {entry['summary'].removeprefix('teacher: ')}"}
    manifest_file = Path(resolve_model_path(path)) / CROSS_FIT_MANIFEST
    if kind == "bi-encoder" and not manifest_file.is_file():
        role = " (the miner)" if miner is not None and name == miner else ""
        return {"kind": kind, "model": name, "checked": None, "summary": f"teacher: bi-encoder {name}{role}"}
    if not manifest_file.is_file():
        return {"kind": kind, "model": name, "checked": False,
                "summary": f"teacher: cross-encoder {name} (not trained by hnm train-teacher, so whether it saw the "
                           "hidden positives cannot be checked)"}
    fix = ("train the teacher on the visible positives only: hnm train-teacher on a copy of the data whose qrels "
           "hold only the visible positives (hidden_positives.csv lists the others), or use --teacher bi-encoder")
    trained = (read_json(manifest_file) or {}).get("trained_positives")
    if not isinstance(trained, list):
        raise SettingsError(f"teacher {name}: {manifest_file} does not list the positives it trained on, so the "
                            f"audit cannot check that it never saw the hidden ones. Fix: retrain it with this "
                            f"version of hnm; {fix}")
    c = collection

    def keys(pairs: dict[str, tuple[str, ...]]) -> set[str]:
        return {pair_key(c.query_texts[c.query_index[q]], c.doc_texts[c.doc_index[d]])
                for q, docs in pairs.items() for d in docs}

    # A hidden positive whose two texts are a visible positive's (a copy of a document under another id, a query
    # asked twice) is not hidden by the split: the visible labels say the same pair, so a teacher trained on them
    # all has learnt it honestly. NFCorpus has 20 such pairs at hide 0.5, seed 0.
    seen = set(trained) & (keys(split.hidden) - keys(split.visible))
    if seen:
        raise SettingsError(f"teacher {name} was trained on {counted(len(seen), 'positive')} the audit hides (of "
                            f"{split.n_hidden:,}), so it would catch them from memory. Fix: {fix}")
    return {"kind": kind, "model": name, "checked": True,
            "summary": f"teacher: cross-fitted {kind} {name}, trained without the "
                       f"{counted(split.n_hidden, 'hidden positive')}"}


def mine_hidden_split(
    collection: Collection,
    values: dict[str, Any],
    *,
    cache_dir: str | Path | None = None,
    encoder: LoadedModel | None = None,
    teacher: LoadedModel | None = None,
    train_teacher_dir: str | Path | None = None,
    progress: Progress = no_progress,
) -> SplitPool:
    """Hide the `hide` setting's share of each query's positives (seeded by `seed`) and mine the rest with `values` (validated
    settings, as `settings.validate` returns them): the pool `audit_pool` measures. The CLI's audit and the studio's
    both mine through here. Embeddings are cached by text, so a collection already mined is not encoded again.

    train_teacher_dir: train the cross-fitted teacher (teacher_train.train_teacher, with the
        `teacher_train` settings of `values`) on the visible positives only, into this folder (resumable), and score
        with it: as the teacher, or as the cross-encoder member of an ensemble teacher. The pool's teacher entry
        records what it trained on (`trained_by_audit`)."""
    from ..engines.local import mine

    split = hide_positives(collection, hide=values["hide"], seed=values["seed"])
    if not split.hidden:
        raise DataError(collection.source or collection.name, "no query has two or more positives, so none can be "
                        "hidden.", fix="audit a collection where queries have several labelled positives")
    visible = split.apply(collection)
    trained = None
    if train_teacher_dir is not None:
        values, trained = _train_visible_teacher(visible, values, train_teacher_dir, split, cache_dir=cache_dir,
                                                 encoder=encoder, progress=progress)
        teacher = None  # the one just trained, loaded by mine
    if teacher is not None:
        vet_teacher(teacher.kind, teacher.name, teacher.path, collection, split,
                    members=values.get("teacher_members", ()))
    else:  # before any mining (after training one): a teacher that saw the hidden positives is refused at once
        vet_teacher(values["teacher"], values["teacher_model"], values["teacher_model"], collection, split,
                    members=values.get("teacher_members", ()))
    pool = mine(visible, values, cache_dir=cache_dir, encoder=encoder, teacher=teacher, progress=progress)
    if trained is not None:
        pool = replace(pool, meta={**pool.meta, "teacher": {**pool.meta["teacher"], "trained_by_audit": trained}})
    return SplitPool(pool, split)


def _train_visible_teacher(visible: Collection, values: dict[str, Any], out: str | Path, split: HiddenSplit, *,
                           cache_dir: str | Path | None, encoder: LoadedModel | None,
                           progress: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the teacher on `visible` (the collection with the hidden positives removed) into `out`; the mining
    settings that score with it, and what it trained on for the report."""
    from ..teacher.training import train_options, train_teacher

    ensemble = values["teacher"] == "ensemble"
    if ensemble and values["teacher_kind"] != "cross-encoder":
        raise SettingsError("--train-teacher with --teacher-kind bi-encoder trains a bi-encoder, and an ensemble's "
                            "trained member is a cross-encoder. Fix: pass --teacher bi-encoder, or --teacher-kind "
                            "cross-encoder")
    if ensemble and "cross-encoder" not in values["teacher_members"]:
        raise SettingsError("--train-teacher trains a cross-encoder, and the ensemble's members "
                            f"({', '.join(values['teacher_members'])}) have none. Fix: add cross-encoder to "
                            "--teacher-members")
    result = train_teacher(visible, out, **train_options(values), pool_settings=values, encoder=encoder,
                           cache_dir=cache_dir, progress=progress)
    kind = "ensemble" if ensemble else values["teacher_kind"]
    trained = {"folder": str(result.out_dir), "queries": len(visible.positives),
               "visible_positives": sum(map(len, visible.positives.values())),
               "hidden_positives_shown": 0, "hidden_positives": split.n_hidden,
               "folds": len(result.folds), "trained_now": result.trained, "kept": result.reused}
    return {**values, "teacher": kind, "teacher_model": str(result.out_dir)}, trained

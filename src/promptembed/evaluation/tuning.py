"""Search template, layer, ensemble and calibration on labelled dev data.

One forward pass per template captures every candidate layer at once
(:meth:`PromptEmbedder.embed_layers`), so the whole grid costs about one evaluation
per template. Ensembles and calibrations are then scored from the stored vectors.

:func:`tune_retrieval` does the same for ``[retrieval]``: each channel's hits are
computed once and every fusion setting is scored from them by nDCG@10 on qrels.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from promptembed._util.vectors import unit
from promptembed.config import RetrievalConfig, load_config
from promptembed.engine.calibration import Calibration
from promptembed.engine.embedder import PromptEmbedder
from promptembed.evaluation.data import read_beir
from promptembed.evaluation.metrics import ndcg_recall, spearman
from promptembed.evaluation.retrieval import corpus_channels, fused_runs

if TYPE_CHECKING:
    from promptembed.config import Config


# Calibrations tune tries on each candidate: centering, and whitening to a few widths
# (on SmolLM2 `ke`, whitening to 128 dims beat centering by 2 points on STS-B dev).
CALIBRATIONS: tuple[tuple[str, str, int | None], ...] = (
    ("center", "center", None),
    ("whiten-64", "whiten", 64),
    ("whiten-128", "whiten", 128),
    ("whiten-256", "whiten", 256),
)


Pair = tuple[str, str, float]


def split_train(
    pairs: Sequence[Pair], *, selection: int = 1500, seed: int = 0
) -> tuple[list[Pair], list[Pair]]:
    """Split labelled train pairs into a fit part and a selection part, deterministically.

    A seeded permutation of the row indices puts ``selection`` rows in the selection
    part; the fit part (for calibrations and demonstrations) keeps the other rows minus
    any pair that shares a sentence with the selection part, so nothing a candidate is
    fitted on is scored. STS-B's en and zh train files are row-parallel, so the same
    rows land on the same side in both languages.

    Example:
        >>> fit, sel = split_train([(f"a{i}", f"b{i}", 1.0) for i in range(10)], selection=3)
        >>> len(fit), len(sel)
        (7, 3)

    """
    if not 0 < selection < len(pairs):
        raise ValueError(f"selection must be in 1..{len(pairs) - 1}, got {selection}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    chosen = sorted(order[:selection].tolist())
    picked = [pairs[i] for i in chosen]
    seen = {s for a, b, _ in picked for s in (a, b)}
    rest = sorted(order[selection:].tolist())
    fit = [pairs[i] for i in rest if pairs[i][0] not in seen and pairs[i][1] not in seen]
    return fit, picked


@dataclass(frozen=True)
class Candidate:
    """One scored configuration."""

    templates: tuple[str, ...]
    """Members as ``name@layer``."""
    calibrated: bool
    spearman: float
    calibration: str = ""
    """``center`` or ``whiten-<dims>`` when calibrated."""
    variant: dict[str, Any] = field(default_factory=dict)
    """Config fields this candidate sets besides its templates (demonstrations, ...)."""

    @property
    def method(self) -> tuple[str, int | None]:
        """The calibration as ``(method, dims)`` for :meth:`Calibration.fit`."""
        if not self.calibration or self.calibration == "center":
            return "center", None
        method, dims = self.calibration.split("-")
        return method, int(dims)


@dataclass
class TuneResult:
    """Every scored candidate, best first."""

    candidates: list[Candidate] = field(default_factory=list)

    @property
    def best(self) -> Candidate:
        """The winner."""
        return self.candidates[0]

    def best_where(
        self, *, ensemble: bool | None = None, calibrated: bool | None = None
    ) -> Candidate | None:
        """The best candidate of a kind (single/ensemble, with/without calibration)."""
        for c in self.candidates:
            if ensemble is not None and (len(c.templates) > 1) != ensemble:
                continue
            if calibrated is not None and c.calibrated != calibrated:
                continue
            return c
        return None


def tune(
    embedder: PromptEmbedder,
    pairs: Sequence[tuple[str, str, float]],
    *,
    templates: Sequence[str] = ("eol", "sth", "sum", "cot", "ke"),
    layers: Sequence[int] | None = None,
    sample: Sequence[str] | None = None,
    max_ensemble: int = 3,
    variants: Sequence[Mapping[str, Any]] = ({},),
) -> TuneResult:
    """Score templates × layers (× variants × calibration × ensembles) by STS Spearman.

    Args:
        embedder: Supplies the model; its own template and layer are ignored.
        pairs: Labelled pairs ``(s1, s2, score)`` to select on (a selection split of
            train, see :func:`split_train`, so that dev stays untouched).
        templates: Templates to try.
        layers: Candidate layers (``hidden_states`` indexing); default the upper
            two thirds of the model.
        sample: Unlabeled texts to fit mean-centering on (disjoint from ``pairs``);
            without it no calibrated candidate is scored.
        max_ensemble: Largest ensemble tried, built from the best single members.
        variants: Config overrides tried with every template, e.g.
            ``{"demonstrations": [[s, w]]}`` or ``{"token_prepending": (1, 8)}``;
            ``{}`` is the plain prompt. Ensembles mix templates of one variant.

    Returns:
        All candidates, best first.
    """
    n_layers = embedder.model.config.get_text_config().num_hidden_layers
    if layers is None:
        layers = list(range(-(2 * n_layers) // 3, 0))
    sentences = sorted({s for a, b, _ in pairs for s in (a, b)})
    index = {s: i for i, s in enumerate(sentences)}
    left = np.array([index[a] for a, _, _ in pairs])
    right = np.array([index[b] for _, b, _ in pairs])
    gold = [g for _, _, g in pairs]

    def score(vectors: np.ndarray) -> float:
        v = unit(vectors)
        return round(spearman((v[left] * v[right]).sum(axis=1).tolist(), gold), 2)

    grid = _Grid(score, {}, {})
    for number, variant in enumerate(variants):
        member = _sibling(embedder, variant)
        for name in templates:
            stacked = member.embed_layers(sentences, name, layers)
            held = member.embed_layers(list(sample), name, layers) if sample else None
            for j, layer in enumerate(layers):
                key = (number, f"{name}@{layer}")
                grid.dev[key] = unit(stacked[:, j])
                if held is not None:
                    grid.fit[key] = unit(held[:, j])
    candidates = []
    for calibrated in (False, True) if sample else (False,):
        for number, variant in enumerate(variants):
            keys = [k for k in grid.dev if k[0] == number]
            candidates += grid.combos(keys, calibrated, max_ensemble, dict(variant))
    candidates.sort(key=lambda c: (-c.spearman, len(c.templates), c.calibrated))
    return TuneResult(candidates)


def _sibling(embedder: PromptEmbedder, variant: Mapping[str, Any]) -> PromptEmbedder:
    """An embedder on the same loaded model with some config fields overridden."""
    if not variant:
        return embedder
    fields = embedder.config.model_dump(exclude={"model", "calibration"})
    return type(embedder).from_model(
        embedder.model, embedder.tokenizer, **{**fields, **dict(variant)}
    )


@dataclass
class _Grid:
    """Stored unit vectors per ``(variant, "name@layer")``, scored without re-embedding."""

    score: Callable[[np.ndarray], float]
    dev: dict[tuple[int, str], np.ndarray]
    fit: dict[tuple[int, str], np.ndarray]
    memo: dict[tuple[tuple[int, str], bool], tuple[float, str]] = field(default_factory=dict)

    def best(self, key: tuple[int, str], calibrated: bool) -> tuple[float, str]:
        if (key, calibrated) not in self.memo:
            if calibrated:
                self.memo[key, calibrated] = self.calibrate(self.dev[key], self.fit[key])
            else:
                self.memo[key, calibrated] = (self.score(self.dev[key]), "")
        return self.memo[key, calibrated]

    def calibrate(self, vec: np.ndarray, sample_vec: np.ndarray) -> tuple[float, str]:
        """The best of centering and whitening to a few widths (cheap: one SVD each)."""
        results = []
        for label, method, dims in CALIBRATIONS:
            if dims is not None and dims >= min(sample_vec.shape) - 1:
                continue
            cal = Calibration.fit(sample_vec, method=method, dims=dims)  # type: ignore[arg-type]
            results.append((self.score(cal.apply(vec)), label))
        return max(results)

    def combos(
        self,
        keys: list[tuple[int, str]],
        calibrated: bool,
        max_ensemble: int,
        variant: dict[str, Any],
    ) -> list[Candidate]:
        """Singles, then ensembles of the best layer of each of the top templates."""
        singles = sorted(keys, key=lambda k: -self.best(k, calibrated)[0])
        out = [Candidate((k[1],), calibrated, *self.best(k, calibrated), variant) for k in singles]
        best_per_template: dict[str, tuple[int, str]] = {}
        for key in singles:
            best_per_template.setdefault(key[1].rsplit("@", 1)[0], key)
        top = list(best_per_template.values())[: max_ensemble + 1]
        for size in range(2, max_ensemble + 1):
            for members in itertools.combinations(top, size):
                vec = np.mean([self.dev[m] for m in members], axis=0)
                if calibrated:
                    held = np.mean([self.fit[m] for m in members], axis=0)
                    value, label = self.calibrate(vec, held)
                else:
                    value, label = self.score(vec), ""
                names = tuple(m[1] for m in members)
                out.append(Candidate(names, calibrated, value, label, variant))
        return out


# -- retrieval: mode, fusion and weights from the user's own qrels ----------------------------

Runs = Mapping[str, Sequence[Sequence[tuple[str, float]]]]
"""Per channel, each query's ``(id, score)`` hits, best first (``corpus_channels``)."""

DENSE_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(1, 10))
"""Dense weights of the weighted fusions tried (BM25 weighs ``1 - w``)."""


@dataclass(frozen=True)
class SetScore:
    """One setting's scores on one collection, and its nDCG@10 gain over BM25 alone there."""

    name: str
    ndcg_at_10: float
    recall_at_100: float
    gain: float = 0.0


@dataclass(frozen=True)
class RetrievalCandidate:
    """One scored ``[retrieval]`` setting (scores are means over the collections)."""

    retrieval: RetrievalConfig
    ndcg_at_10: float
    recall_at_100: float
    sets: tuple[SetScore, ...] = ()

    @property
    def min_gain(self) -> float:
        """The smallest nDCG@10 gain over BM25 alone across the collections."""
        return min((s.gain for s in self.sets), default=0.0)

    @property
    def label(self) -> str:
        """``dense``, ``bm25``, ``weighted 0.3/0.7`` or ``rrf k=60``."""
        r = self.retrieval
        if r.mode == "dense":
            return "dense"
        if r.fusion == "rrf":
            return f"rrf k={r.rrf_k}"
        if r.weights.get("dense") == 0:
            return "bm25"
        return f"weighted {r.weights['dense']}/{r.weights['bm25']}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON output: the label, the fields a config gets, the scores."""
        r = self.retrieval
        return {
            "label": self.label,
            **r.model_dump(include={"mode", "channels", "fusion", "weights", "rrf_k"}),
            "ndcg@10": self.ndcg_at_10,
            "recall@100": self.recall_at_100,
            "min_gain_over_bm25": self.min_gain,
            "sets": [
                {
                    "name": s.name,
                    "ndcg@10": s.ndcg_at_10,
                    "recall@100": s.recall_at_100,
                    "gain_over_bm25": s.gain,
                }
                for s in self.sets
            ],
        }


@dataclass
class RetrievalTuneResult:
    """Every scored retrieval setting, best first."""

    candidates: list[RetrievalCandidate] = field(default_factory=list)

    @property
    def best(self) -> RetrievalCandidate:
        """The winner."""
        return self.candidates[0]


def retrieval_grid(base: RetrievalConfig) -> list[RetrievalConfig]:
    """The settings :func:`tune_retrieval` scores, simplest first.

    Dense alone, BM25 alone, dense + BM25 weighted with dense weight 0.1 … 0.9, and
    RRF (k = 60). A hybrid of one channel is not a config, so BM25 alone is the
    weighted fusion with dense weight 0: BM25's own order, and what a store can serve.
    ``base`` supplies everything else (candidates, stemmer, BM25 parameters).
    """
    fields = base.model_dump(exclude={"mode", "channels", "fusion", "weights", "rrf_k"})
    hybrid = {**fields, "mode": "hybrid", "channels": ["dense", "bm25"]}
    grid = [RetrievalConfig(**fields)]
    for w in (0.0, *DENSE_WEIGHTS):
        weights = {"dense": w, "bm25": round(1 - w, 1)}
        grid.append(RetrievalConfig(**hybrid, fusion="weighted", weights=weights))
    grid.append(RetrievalConfig(**hybrid, fusion="rrf", rrf_k=60))
    return grid


def score_retrieval(
    runs: Runs,
    retrieval: RetrievalConfig,
    qids: Sequence[str],
    qrels: Mapping[str, Mapping[str, int]],
) -> RetrievalCandidate:
    """Score one setting from stored channel runs, ranked as every face ranks (one fusion).

    A hybrid setting sees each channel's top ``retrieval.candidates`` only, as
    :func:`promptembed.evaluate.evaluate_retrieval` gives it.
    """
    n = retrieval.candidates if retrieval.mode == "hybrid" else None
    cut = {name: [hits[:n] for hits in runs[name]] for name in retrieval.active}
    ndcg, recall = ndcg_recall(fused_runs(cut, retrieval, qids), qrels)
    return RetrievalCandidate(retrieval, round(ndcg, 4), round(recall, 4))


PathOrPaths = str | Path | Sequence[str | Path]


def tune_retrieval(
    config: Config | str | Path | dict[str, Any],
    corpus: PathOrPaths,
    queries: PathOrPaths,
    qrels: PathOrPaths,
    *,
    embedder: PromptEmbedder | None = None,
) -> RetrievalTuneResult:
    """Pick the retrieval mode, fusion and weights on labelled queries of one or more collections.

    Each corpus and its queries are embedded once with the config's embedder and each
    channel's hits are computed once; every setting of :func:`retrieval_grid` is then
    fused from them. The winner is the setting whose smallest nDCG@10 gain over BM25
    alone, across the collections, is largest (on one collection: the best nDCG@10), so
    that it carries to collections it was not tuned on. Ties go to the simpler setting.

    Args:
        config: The config whose ``[embedder]`` and ``[retrieval]`` (candidates,
            stemmer, BM25 parameters) are used.
        corpus: BEIR ``corpus.jsonl``, or one per collection.
        queries: BEIR ``queries.jsonl``, or one per collection (same order).
        qrels: Qrels TSV (``query-id``, ``corpus-id``, ``score``), or one per collection.
        embedder: An already loaded embedder for ``config.embedder``.

    Returns:
        Every setting with its mean nDCG@10 and Recall@100 and its scores per
        collection, best first.

    Raises:
        ValueError: If the lists differ in length or a collection has no judged query.

    Example:
        >>> from promptembed.evaluation.tuning import tune_retrieval
        >>> result = tune_retrieval(  # doctest: +SKIP
        ...     "pe.toml", ["a/corpus.jsonl", "b/corpus.jsonl"], ["a/q.jsonl", "b/q.jsonl"],
        ...     ["a/qrels.tsv", "b/qrels.tsv"]
        ... )
        >>> result.best.label, result.best.min_gain  # doctest: +SKIP
        ('weighted 0.2/0.8', 0.004)

    """
    cfg = load_config(config)
    sets = _collections(corpus, queries, qrels)
    if embedder is None:
        embedder = PromptEmbedder(config=cfg.embedder)
    grid = retrieval_grid(cfg.retrieval)
    # Deep enough for dense mode's top 100 and for the configured candidates.
    probe = grid[1].model_copy(update={"candidates": max(100, cfg.retrieval.candidates)})
    per_set = []  # per collection, every grid setting's scores
    for name, (c, q, r) in sets.items():
        docs, qs, judged = read_beir(c, q, r)
        if not qs:
            raise ValueError(f"no query of {q} is judged in {r}")
        runs = corpus_channels(embedder, docs, qs, probe)
        scored = [score_retrieval(runs, setting, list(qs), judged) for setting in grid]
        bm25 = scored[1].ndcg_at_10
        per_set.append(
            [
                SetScore(name, x.ndcg_at_10, x.recall_at_100, round(x.ndcg_at_10 - bm25, 4))
                for x in scored
            ]
        )
    candidates = [
        RetrievalCandidate(
            setting,
            round(float(np.mean([s[i].ndcg_at_10 for s in per_set])), 4),
            round(float(np.mean([s[i].recall_at_100 for s in per_set])), 4),
            tuple(s[i] for s in per_set),
        )
        for i, setting in enumerate(grid)
    ]
    order = sorted(range(len(grid)), key=lambda i: (-candidates[i].min_gain, i))
    return RetrievalTuneResult([candidates[i] for i in order])


def _collections(
    corpus: PathOrPaths, queries: PathOrPaths, qrels: PathOrPaths
) -> dict[str, tuple[Path, Path, Path]]:
    """``name -> (corpus, queries, qrels)``, named by the corpus's folder."""
    lists = [[p] if isinstance(p, (str, Path)) else list(p) for p in (corpus, queries, qrels)]
    if len({len(x) for x in lists}) != 1 or not lists[0]:
        raise ValueError(
            "retrieval tuning needs as many --queries and --qrels as --corpus, in the same "
            f"order; got {len(lists[0])} corpus, {len(lists[1])} queries, {len(lists[2])} qrels"
        )
    sets: dict[str, tuple[Path, Path, Path]] = {}
    for c, q, r in zip(*lists):
        name = Path(c).resolve().parent.name or str(c)
        while name in sets:
            name += "'"
        sets[name] = (Path(c), Path(q), Path(r))
    return sets

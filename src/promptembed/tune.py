"""Search template, layer, ensemble and calibration on labelled dev data.

One forward pass per template captures every candidate layer at once
(:meth:`PromptEmbedder.embed_layers`), so the whole grid costs about one evaluation
per template. Ensembles and calibrations are then scored from the stored vectors.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from promptembed.calibration import Calibration
from promptembed.evaluate import spearman

if TYPE_CHECKING:
    from promptembed.embedder import PromptEmbedder


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Candidate:
    """One scored configuration."""

    templates: tuple[str, ...]
    """Members as ``name@layer``."""
    calibrated: bool
    spearman: float


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
) -> TuneResult:
    """Score templates × layers (× centering, × ensembles) by STS Spearman on ``pairs``.

    Args:
        embedder: Supplies the model; its own template and layer are ignored.
        pairs: Labelled dev pairs ``(s1, s2, score)``.
        templates: Templates to try.
        layers: Candidate layers (``hidden_states`` indexing); default the upper
            two thirds of the model.
        sample: Unlabeled texts to fit mean-centering on (disjoint from ``pairs``);
            without it no calibrated candidate is scored.
        max_ensemble: Largest ensemble tried, built from the best single members.

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
        v = _unit(vectors)
        return spearman((v[left] * v[right]).sum(axis=1).tolist(), gold)

    dev: dict[str, np.ndarray] = {}  # "name@layer" -> (n, hidden) unit vectors
    fit: dict[str, np.ndarray] = {}
    for name in templates:
        stacked = embedder.embed_layers(sentences, name, layers)
        held = embedder.embed_layers(list(sample), name, layers) if sample else None
        for j, layer in enumerate(layers):
            key = f"{name}@{layer}"
            dev[key] = _unit(stacked[:, j])
            if held is not None:
                fit[key] = _unit(held[:, j])

    def combos(calibrated: bool) -> list[Candidate]:
        out = []
        singles = sorted(dev, key=lambda k: -_scored(k, calibrated))
        for key in singles:
            out.append(Candidate((key,), calibrated, _scored(key, calibrated)))
        # Ensembles of the best layer of each template, among the top templates.
        best_per_template: dict[str, str] = {}
        for key in singles:
            best_per_template.setdefault(key.rsplit("@", 1)[0], key)
        top = list(best_per_template.values())[: max_ensemble + 1]
        for size in range(2, max_ensemble + 1):
            for members in itertools.combinations(top, size):
                vec = np.mean([dev[m] for m in members], axis=0)
                if calibrated:
                    cal = Calibration.fit(np.mean([fit[m] for m in members], axis=0))
                    vec = cal.apply(vec)
                out.append(Candidate(tuple(members), calibrated, round(score(vec), 2)))
        return out

    cache: dict[tuple[str, bool], float] = {}

    def _scored(key: str, calibrated: bool) -> float:
        if (key, calibrated) not in cache:
            vec = dev[key]
            if calibrated:
                vec = Calibration.fit(fit[key]).apply(vec)
            cache[key, calibrated] = round(score(vec), 2)
        return cache[key, calibrated]

    candidates = combos(False) + (combos(True) if sample else [])
    candidates.sort(key=lambda c: (-c.spearman, len(c.templates), c.calibrated))
    return TuneResult(candidates)

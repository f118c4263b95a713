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


# Calibrations tune tries on each candidate: centering, and whitening to a few widths
# (on SmolLM2 `ke`, whitening to 128 dims beat centering by 2 points on STS-B dev).
CALIBRATIONS: tuple[tuple[str, str, int | None], ...] = (
    ("center", "center", None),
    ("whiten-64", "whiten", 64),
    ("whiten-128", "whiten", 128),
    ("whiten-256", "whiten", 256),
)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Candidate:
    """One scored configuration."""

    templates: tuple[str, ...]
    """Members as ``name@layer``."""
    calibrated: bool
    spearman: float
    calibration: str = ""
    """``center`` or ``whiten-<dims>`` when calibrated."""

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
            out.append(Candidate((key,), calibrated, *_best(key, calibrated)))
        # Ensembles of the best layer of each template, among the top templates.
        best_per_template: dict[str, str] = {}
        for key in singles:
            best_per_template.setdefault(key.rsplit("@", 1)[0], key)
        top = list(best_per_template.values())[: max_ensemble + 1]
        for size in range(2, max_ensemble + 1):
            for members in itertools.combinations(top, size):
                vec = np.mean([dev[m] for m in members], axis=0)
                if calibrated:
                    value, label = best_calibration(vec, np.mean([fit[m] for m in members], axis=0))
                else:
                    value, label = round(score(vec), 2), ""
                out.append(Candidate(tuple(members), calibrated, value, label))
        return out

    def best_calibration(vec: np.ndarray, sample_vec: np.ndarray) -> tuple[float, str]:
        """The best of centering and whitening to a few widths (cheap: one SVD each)."""
        results = []
        for label, method, dims in CALIBRATIONS:
            if dims is not None and dims >= min(sample_vec.shape) - 1:
                continue
            cal = Calibration.fit(sample_vec, method=method, dims=dims)  # type: ignore[arg-type]
            results.append((round(score(cal.apply(vec)), 2), label))
        return max(results)

    cache: dict[tuple[str, bool], tuple[float, str]] = {}

    def _best(key: str, calibrated: bool) -> tuple[float, str]:
        if (key, calibrated) not in cache:
            if calibrated:
                cache[key, calibrated] = best_calibration(dev[key], fit[key])
            else:
                cache[key, calibrated] = (round(score(dev[key]), 2), "")
        return cache[key, calibrated]

    def _scored(key: str, calibrated: bool) -> float:
        return _best(key, calibrated)[0]

    candidates = combos(False) + (combos(True) if sample else [])
    candidates.sort(key=lambda c: (-c.spearman, len(c.templates), c.calibrated))
    return TuneResult(candidates)

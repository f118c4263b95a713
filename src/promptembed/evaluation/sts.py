"""STS evaluation: Spearman correlation of cosine similarities with gold scores."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from promptembed.evaluation.data import read_sts
from promptembed.evaluation.metrics import spearman

if TYPE_CHECKING:
    from promptembed.engine.embedder import PromptEmbedder


@dataclass(frozen=True)
class StsResult:
    """Outcome of one STS evaluation."""

    data: str
    spearman: float
    """Spearman correlation ×100 between cosine similarity and gold scores."""
    pairs: int
    sentences: int
    """Distinct sentences embedded."""
    seconds: float

    def to_dict(self) -> dict[str, object]:
        """Plain dict, for JSON output."""
        return asdict(self)


def evaluate_sts(
    embedder: PromptEmbedder,
    data: str | Path | Sequence[tuple[str, str, float]],
    *,
    name: str | None = None,
) -> StsResult:
    """Spearman ×100 of cosine similarity against gold scores.

    Each distinct sentence is embedded once.

    Args:
        embedder: The embedder.
        data: A CSV path or ``(s1, s2, score)`` triples.
        name: Label for the result (defaults to the file name).

    """
    pairs = read_sts(data) if isinstance(data, (str, Path)) else list(data)
    label = name or (str(data) if isinstance(data, (str, Path)) else "pairs")
    start = time.perf_counter()
    sentences = sorted({s for s1, s2, _ in pairs for s in (s1, s2)})
    index = {s: i for i, s in enumerate(sentences)}
    vectors = embedder.embed(sentences)
    vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    a = vectors[[index[s1] for s1, _, _ in pairs]]
    b = vectors[[index[s2] for _, s2, _ in pairs]]
    cosine = (a * b).sum(axis=1)
    score = spearman(cosine.tolist(), [g for _, _, g in pairs])
    seconds = time.perf_counter() - start
    return StsResult(label, round(score, 2), len(pairs), len(sentences), round(seconds, 1))

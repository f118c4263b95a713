"""The metrics, as the field computes them: Spearman, nDCG@k with graded gains, Recall@k."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation ×100."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic) * 100.0


def ndcg_recall(
    ranked: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]
) -> tuple[float, float]:
    """Mean nDCG@10 and Recall@100 of ranked doc ids per query (graded gains, BEIR style)."""
    ndcgs, recalls = [], []
    for qid, rels in qrels.items():
        docs = list(ranked.get(qid, []))
        gains = [rels.get(d, 0) for d in docs[:10]]
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
        ideal = sorted(rels.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        ndcgs.append(dcg / idcg if idcg > 0 else 0.0)
        relevant = {d for d, g in rels.items() if g > 0}
        recalls.append(len(relevant & set(docs[:100])) / len(relevant) if relevant else 0.0)
    return float(np.mean(ndcgs)), float(np.mean(recalls))

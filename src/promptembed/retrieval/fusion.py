"""Fusion of ranked channels: the one place where dense, BM25 and sparse scores meet.

Two methods:

* ``weighted``: each channel's scores over its own top candidates are min-max
  normalised per query to [0, 1]; a document a channel did not return counts 0 there;
  the fused score is the weighted sum over the union of candidates (LlamaIndex's
  ``relative_score`` fusion). The weights matter: tuned on SciFact train they beat
  the best channel, where equal weights may not.
* ``rrf``: reciprocal rank fusion, ``sum_c w_c / (rrf_k + rank_c)``. It ignores
  score gaps, so a weak channel counts as much as a strong one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Hits = Sequence[tuple[str, float]]
"""One channel's answer: ``(id, score)`` pairs, best first."""


def fuse(
    channels: Mapping[str, Hits],
    *,
    method: str = "weighted",
    weights: Mapping[str, float] | None = None,
    rrf_k: int = 60,
    k: int | None = None,
) -> list[tuple[str, float]]:
    """Fuse per-channel rankings into one, best first (ties broken by id).

    Args:
        channels: Channel name -> its hits, best first.
        method: ``weighted`` (min-max normalised weighted sum) or ``rrf``.
        weights: Per channel; a missing channel weighs 1.
        rrf_k: The constant of reciprocal rank fusion.
        k: Keep the best ``k`` (default: all candidates).

    Raises:
        ValueError: On an unknown method or a weight for a channel that is not there.

    Example:
        >>> fuse({"dense": [("a", 0.9), ("b", 0.1)], "bm25": [("b", 7.0), ("c", 1.0)]},
        ...      weights={"dense": 0.3, "bm25": 0.7})
        [('b', 0.7), ('a', 0.3), ('c', 0.0)]

    """
    weights = dict(weights or {})
    unknown = set(weights) - set(channels)
    if unknown:
        raise ValueError(f"weights name channels {sorted(unknown)} not in {sorted(channels)}")
    fused: dict[str, float] = {}
    for name, hits in channels.items():
        weight = weights.get(name, 1.0)
        for doc, value in _channel_scores(hits, method, rrf_k).items():
            fused[doc] = fused.get(doc, 0.0) + weight * value
    ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:k] if k is not None else ranked


def _channel_scores(hits: Hits, method: str, rrf_k: int) -> dict[str, float]:
    if method == "rrf":
        return {doc: 1.0 / (rrf_k + rank) for rank, (doc, _) in enumerate(hits, start=1)}
    if method != "weighted":
        raise ValueError(f"fusion method must be one of ['rrf', 'weighted'], got {method!r}")
    return dict(zip([doc for doc, _ in hits], min_max([s for _, s in hits])))


def min_max(values: Sequence[float]) -> list[float]:
    """Scores scaled to [0, 1] over their own range (all 1.0 when they are all equal).

    Example:
        >>> min_max([2.0, 4.0, 3.0])
        [0.0, 1.0, 0.5]

    """
    if not values:
        return []
    low, span = min(values), max(values) - min(values)
    # Candidates that all score the same say nothing about their order.
    return [(v - low) / span if span > 0 else 1.0 for v in values]

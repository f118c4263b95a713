"""Reranking: the first stage's best candidates reordered by the model's query likelihood.

One function serves every face (the retriever behind ``promptembed query``, the server,
LangChain and LlamaIndex, ``eval retrieval``, and the LangChain compressor and
LlamaIndex postprocessor), so a reranked ranking is the same wherever it is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from promptembed.retrieval.fusion import Hits, min_max

if TYPE_CHECKING:
    from promptembed.config import RerankConfig


class Likelihood(Protocol):
    """What reranking needs of an embedder (:class:`~promptembed.PromptEmbedder` has it)."""

    def query_likelihood(
        self,
        query: str,
        passages: Sequence[str],
        *,
        prompt: str = ...,
        max_passage_tokens: int = ...,
        batch_size: int | None = ...,
    ) -> np.ndarray:
        """Mean log-probability of the query's tokens after each passage's prompt."""
        ...


def check_reranker(embedder: object) -> None:
    """Refuse an embedder that cannot score query likelihood (a client of a server).

    Raises:
        ValueError: Naming the embedder's type and what to do instead.

    """
    check_local_model(embedder, "query_likelihood", "[retrieval.rerank]")


def check_local_model(embedder: object, method: str, setting: str) -> None:
    """Refuse an embedder without ``method``, which ``setting`` needs (a client of a server).

    Reranking and the sparse channel read the model's logits; a client-mode embedder
    only receives dense vectors.

    Raises:
        ValueError: Naming the setting, the embedder's type and what to do instead.

    """
    if not callable(getattr(embedder, method, None)):
        raise ValueError(
            f"{setting} needs the model in this process, but the embedder is a "
            f"{type(embedder).__name__} (client mode sends texts to a server that only "
            f"embeds); drop [embedder] server or {setting}"
        )


def rerank(
    query: str,
    ranked: Hits,
    texts: Mapping[str, str],
    embedder: Likelihood,
    config: RerankConfig,
) -> list[tuple[str, float]]:
    """``ranked`` with its top ``config.top_k`` reordered by query likelihood.

    The reranked candidates score ``weight * likelihood + (1 - weight) * first stage``,
    both min-max normalised over those candidates, in [0, 1]. The candidates below keep
    their order and their first-stage score on the same scale (at most 0), so the whole
    list stays sorted.

    Args:
        query: The query.
        ranked: First-stage ``(id, score)`` pairs, best first.
        texts: Text of each id in at least the top ``top_k``.
        embedder: Scores query likelihood (:meth:`PromptEmbedder.query_likelihood`).
        config: The ``[retrieval.rerank]`` table.

    Example:
        >>> class Toy:
        ...     def query_likelihood(self, query, passages, **_):
        ...         return np.array([-len(p) for p in passages], dtype=float)
        >>> from promptembed.config import RerankConfig
        >>> rerank("q", [("a", 3.0), ("b", 2.0), ("c", 1.0)], {"a": "long text", "b": "ab"},
        ...        Toy(), RerankConfig(top_k=2, weight=1.0))
        [('b', 1.0), ('a', 0.0), ('c', 0.0)]

    """
    head, tail = list(ranked[: config.top_k]), list(ranked[config.top_k :])
    if not head:
        return []
    likelihood = embedder.query_likelihood(
        query,
        [texts[doc] for doc, _ in head],
        prompt=config.prompt,
        max_passage_tokens=config.max_passage_tokens,
        batch_size=config.batch_size,
    )
    first = [score for _, score in head]
    mixed = [
        config.weight * lik + (1 - config.weight) * base
        for lik, base in zip(min_max(list(likelihood)), min_max(first))
    ]
    order = sorted(range(len(head)), key=lambda i: -mixed[i])  # stable: ties keep rank
    low, span = min(first), max(first) - min(first)
    below = [
        (doc, (1 - config.weight) * ((s - low) / span if span > 0 else 0.0)) for doc, s in tail
    ]
    return [(head[i][0], float(mixed[i])) for i in order] + [
        (d, float(s) + 0.0) for d, s in below
    ]  # no -0.0


class PairTable:
    """A :class:`Likelihood` answering from scores computed beforehand.

    Args:
        table: ``{(query, passage): score}``.

    Example:
        >>> PairTable({("q", "a"): -1.0, ("q", "b"): -2.0}).query_likelihood("q", ["b", "a"])
        array([-2., -1.])

    """

    def __init__(self, table: Mapping[tuple[str, str], float]) -> None:
        self.table = table

    def query_likelihood(self, query: str, passages: Sequence[str], **_: object) -> np.ndarray:
        """The stored score of each ``(query, passage)``."""
        return np.array([self.table[(query, p)] for p in passages], dtype=np.float64)


def rerank_all(
    queries: Mapping[str, str],
    scored: Mapping[str, Hits],
    texts: Mapping[str, str],
    embedder: Likelihood,
    config: RerankConfig,
) -> dict[str, list[tuple[str, float]]]:
    """:func:`rerank` of many queries, their pairs scored together.

    With an embedder that has ``pair_likelihoods`` (:class:`~promptembed.PromptEmbedder`),
    every ``(query, candidate)`` pair of every query is scored in one call that runs
    each candidate passage once for all the queries it is a candidate of; the rankings
    are those :func:`rerank` gives query by query (tested).

    Args:
        queries: Query text per query id.
        scored: First-stage ``(id, score)`` pairs per query id, best first.
        texts: Text of each candidate id.
        embedder: Scores query likelihood.
        config: The ``[retrieval.rerank]`` table.

    Returns:
        Per query id, its reranked list.

    """
    scorer: Likelihood = embedder
    batch = getattr(embedder, "pair_likelihoods", None)
    if callable(batch):
        top = config.top_k
        wanted = ((queries[q], texts[d]) for q, hits in scored.items() for d, _ in hits[:top])
        pairs = list(dict.fromkeys(wanted))
        values = batch(
            pairs,
            prompt=config.prompt,
            max_passage_tokens=config.max_passage_tokens,
            batch_size=config.batch_size,
        )
        scorer = PairTable(dict(zip(pairs, values)))
    return {q: rerank(queries[q], hits, texts, scorer, config) for q, hits in scored.items()}

"""Token-budget batching: sort by length, pack up to a budget of padded tokens."""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(lengths: Sequence[int], max_tokens: int, max_items: int) -> list[list[int]]:
    """Group indices into batches of similar length.

    Indices are taken longest first, so each batch's padded size is set by its first
    item; a batch closes when one more item would exceed ``max_tokens`` padded tokens
    or ``max_items`` items. A single item longer than the budget gets a batch alone.

    Args:
        lengths: Token count of each item.
        max_tokens: Budget of ``len(batch) * longest`` per batch.
        max_items: Max items per batch.

    Returns:
        Batches of indices into ``lengths``; every index appears exactly once.

    Example:
        >>> plan_batches([3, 10, 4, 9], max_tokens=20, max_items=8)
        [[1, 3], [2, 0]]

    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Longest-first: the batch's width is the length of its first item.
        width = lengths[current[0]] if current else lengths[index]
        if current and ((len(current) + 1) * width > max_tokens or len(current) >= max_items):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches

"""Pooling of token states into one vector, from attention masks only.

Both functions work for either padding side: they never assume where the
padding is, only read the mask.
"""

from __future__ import annotations

import torch


def last_token_indices(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended position in each row.

    Args:
        attention_mask: ``(batch, seq)`` tensor of 0/1.

    Returns:
        ``(batch,)`` long tensor.

    Example:
        >>> last_token_indices(torch.tensor([[1, 1, 0], [0, 1, 1]])).tolist()
        [1, 2]

    """
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    # argmax over mask * position finds the right-most attended token even with
    # left padding, where "sum - 1" would point into the padding.
    return (attention_mask.to(torch.long) * positions).argmax(dim=1)


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of each row's last attended token.

    Args:
        hidden: ``(batch, seq, dim)``.
        attention_mask: ``(batch, seq)``.

    Returns:
        ``(batch, dim)``.

    """
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last_token_indices(attention_mask).to(hidden.device)]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the attended tokens' states in each row (computed in float32).

    Args:
        hidden: ``(batch, seq, dim)``.
        attention_mask: ``(batch, seq)``.

    Returns:
        ``(batch, dim)`` float32.

    """
    mask = attention_mask.to(device=hidden.device, dtype=torch.float32).unsqueeze(-1)
    summed = (hidden.float() * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1.0)

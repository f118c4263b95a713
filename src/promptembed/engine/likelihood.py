"""Query likelihood: how well a passage predicts a query, read from the embedder's own model.

The training-free reranker of UPR (Sachan et al., 2022, arXiv 2204.07496) and of
Zhuang et al. (2023, arXiv 2310.13243, who find base models better query-likelihood
rankers than instruction-tuned ones): a passage's score for a query is the mean
log-probability of the query's tokens after a prompt that shows the passage and asks
for a question about it,

    score(q, p) = 1/|q| * sum_t log P(q_t | prompt(p), q_<t).

The LM head is applied only at the query's positions; the rest of each pass is the base
model the embedder already holds, so reranking loads nothing new (a tied head reuses the
input embeddings; an untied one is read from the checkpoint, as for sparse vectors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

_HEAD_ROWS = 128  # scored positions per LM-head matmul: 128 x 262k floats is 134 MB


def pair_ids(
    tokenizer: Any, prompt: str, query: str, passages: Sequence[str], max_passage_tokens: int
) -> tuple[list[list[int]], int]:
    """Token ids of ``prompt(passage) + query`` per passage, and the query's length.

    The passage is cut to ``max_passage_tokens`` tokens before it is placed in the
    prompt. The query is tokenised once, on its own (after a space where the prompt ends
    in a visible ASCII character, as ``Question:``), so every passage is scored on the
    same query tokens.
    """
    heads = head_ids(tokenizer, prompt, passages, max_passage_tokens)
    tail = tail_ids(tokenizer, prompt, query)
    return [head + tail for head in heads], len(tail)


def head_ids(
    tokenizer: Any, prompt: str, passages: Sequence[str], max_passage_tokens: int
) -> list[list[int]]:
    """Token ids of ``prompt(passage)`` per passage (cut first), with the model's BOS."""
    before, after = prompt.split("{passage}", 1)
    cut = tokenizer(list(passages), add_special_tokens=False)["input_ids"]
    texts = [
        before + tokenizer.decode(ids[:max_passage_tokens], skip_special_tokens=True) + after
        for ids in cut
    ]
    return tokenizer(texts)["input_ids"]  # with the model's BOS, as in generation


def tail_ids(tokenizer: Any, prompt: str, query: str) -> list[int]:
    """Token ids of the query as it follows ``prompt`` (see :func:`pair_ids`)."""
    end = prompt.rsplit("{passage}", 1)[1][-1:]
    spaced = " " + query if end.isascii() and end.strip() else query
    return tokenizer(spaced, add_special_tokens=False)["input_ids"]


def shared_head_log_likelihood(
    model: Any,
    head: torch.Tensor,
    prefix: Sequence[int],
    tails: Sequence[Sequence[int]],
    pad_id: int,
    softcap: float | None = None,
) -> np.ndarray:
    """:func:`mean_log_likelihood` of ``prefix + tail`` per tail, the prefix run once.

    Many queries scored against one passage share ``prompt(passage)``: its keys and
    values are computed once (transformers' ``DynamicCache``) and served to a batch of
    the right-padded query tails, which alone run through the model. The state at the
    prefix's last position predicts each tail's first token.
    """
    import torch
    from transformers import DynamicCache

    from promptembed.engine.forward import cache_keyword, expanded_cache

    device = head.device
    n, width, start = len(tails), max(len(t) for t in tails), len(prefix)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, tail in enumerate(tails):
        ids[row, : len(tail)] = torch.tensor(list(tail))
        mask[row, : len(tail)] = 1
    kw = cache_keyword(model)
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        first = model(
            input_ids=torch.tensor([list(prefix)], device=device),
            attention_mask=torch.ones((1, start), dtype=torch.long, device=device),
            use_cache=True,
            **{kw: cache},
        ).last_hidden_state[:, -1:]
        states = model(
            input_ids=ids.to(device),
            attention_mask=torch.cat([torch.ones((n, start), dtype=torch.long), mask], 1).to(
                device
            ),
            position_ids=torch.arange(start, start + width, device=device)[None].expand(n, -1),
            use_cache=True,
            **{kw: expanded_cache(cache, n)},
        ).last_hidden_state
        # position j of `predicting` predicts tail token j; only real tokens are scored
        predicting = torch.cat([first.expand(n, -1, -1), states[:, :-1]], dim=1)
        rows, cols = mask.nonzero(as_tuple=True)
        total = _scored(predicting[rows.to(device), cols.to(device)], head, ids[rows, cols], rows,
                        n, softcap)  # fmt: skip
    return (total / mask.sum(dim=1)).numpy()


def mean_log_likelihood(
    model: Any,
    head: torch.Tensor,
    sequences: Sequence[Sequence[int]],
    tail: int | Sequence[int],
    pad_id: int,
    softcap: float | None = None,
) -> np.ndarray:
    """Mean log-probability of each sequence's last ``tail`` tokens given what precedes them.

    Sequences are right-padded into one batch; ``model`` is a transformers base model
    (its output is the final, normed hidden state) and ``head`` the ``(vocab, hidden)``
    LM head weight. ``tail`` is one length for all sequences or one per sequence.
    """
    import torch

    device = head.device
    n = len(sequences)
    tails = [tail] * n if isinstance(tail, int) else list(tail)
    lengths = [len(s) for s in sequences]
    ids = torch.full((n, max(lengths)), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq))
        mask[row, : len(seq)] = 1
    # The state at position j predicts token j + 1: a sequence's tail tokens are
    # predicted by the positions that end one before its end.
    rows = torch.tensor([r for r in range(n) for _ in range(tails[r])], dtype=torch.long)
    at = torch.tensor([lengths[r] - tails[r] - 1 + j for r in range(n) for j in range(tails[r])])
    with torch.inference_mode():
        states = model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        total = _scored(states[rows.to(device), at.to(device)], head, ids[rows, at + 1], rows, n,
                        softcap)  # fmt: skip
    return (total / torch.tensor(tails, dtype=torch.float64)).numpy()


def _scored(
    predicting: torch.Tensor,
    head: torch.Tensor,
    targets: torch.Tensor,
    rows: torch.Tensor,
    n: int,
    softcap: float | None,
) -> torch.Tensor:
    """Per row, the summed log-probability of its targets, ``_HEAD_ROWS`` positions at a time.

    ``predicting[i]`` is the state that predicts ``targets[i]`` of row ``rows[i]``; a row
    of logits is the whole vocabulary, so they are made a slice at a time.
    """
    import torch

    total = torch.zeros(n, dtype=torch.float64)
    for at in range(0, len(rows), _HEAD_ROWS):
        cut = slice(at, at + _HEAD_ROWS)
        logits = (predicting[cut] @ head.T).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        picked = logits.gather(-1, targets[cut].to(logits.device).unsqueeze(-1)).squeeze(-1)
        total.index_add_(0, rows[cut], (picked - torch.logsumexp(logits, dim=-1)).double().cpu())
    return total

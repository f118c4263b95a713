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


def pair_ids(
    tokenizer: Any, prompt: str, query: str, passages: Sequence[str], max_passage_tokens: int
) -> tuple[list[list[int]], list[int]]:
    """Token ids of ``prompt(passage) + query`` per passage, and the query's length.

    The passage is cut to ``max_passage_tokens`` tokens before it is placed in the
    prompt. The query is tokenised once, on its own (after a space where the prompt ends
    in a visible ASCII character, as ``Question:``), so every passage is scored on the
    same query tokens.
    """
    before, after = prompt.split("{passage}", 1)
    cut = tokenizer(list(passages), add_special_tokens=False)["input_ids"]
    texts = [
        before + tokenizer.decode(ids[:max_passage_tokens], skip_special_tokens=True) + after
        for ids in cut
    ]
    heads = tokenizer(texts)["input_ids"]  # with the model's BOS, as in generation
    end = after[-1:]
    spaced = " " + query if end.isascii() and end.strip() else query
    tail = tokenizer(spaced, add_special_tokens=False)["input_ids"]
    return [head + tail for head in heads], len(tail)


def mean_log_likelihood(
    model: Any,
    head: torch.Tensor,
    sequences: Sequence[Sequence[int]],
    tail: int,
    pad_id: int,
    softcap: float | None = None,
) -> np.ndarray:
    """Mean log-probability of each sequence's last ``tail`` tokens given what precedes them.

    Sequences are right-padded into one batch; ``model`` is a transformers base model
    (its output is the final, normed hidden state) and ``head`` the ``(vocab, hidden)``
    LM head weight.
    """
    import torch

    device = head.device
    lengths = [len(s) for s in sequences]
    width = max(lengths)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    # The state at position j predicts token j + 1: the query's tokens are predicted by
    # the `tail` positions that end one before each sequence's end.
    rows = torch.arange(len(sequences)).unsqueeze(1)
    ends = torch.tensor(lengths).unsqueeze(1)
    at = ends - tail - 1 + torch.arange(tail).unsqueeze(0)
    with torch.inference_mode():
        states = model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        logits = (states[rows.to(device), at.to(device)] @ head.T).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        targets = ids[rows, at + 1].to(device)
        picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        scores = (picked - torch.logsumexp(logits, dim=-1)).mean(dim=1)
    return scores.cpu().numpy().astype(np.float64)

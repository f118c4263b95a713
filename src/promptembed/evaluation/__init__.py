"""Evaluation: STS and retrieval metrics as the field computes them, and ``tune``.

Example:
    >>> from promptembed.evaluation import evaluate_sts  # doctest: +SKIP
    >>> evaluate_sts(PromptEmbedder("smollm2-135m"), "stsb-en-dev.csv").spearman  # doctest: +SKIP
"""

from __future__ import annotations

from promptembed.evaluation.data import iter_lines, read_beir, read_sts, read_texts
from promptembed.evaluation.metrics import ndcg_recall, spearman
from promptembed.evaluation.retrieval import RetrievalResult, evaluate_retrieval
from promptembed.evaluation.sts import StsResult, evaluate_sts
from promptembed.evaluation.tuning import split_train, tune, tune_retrieval

__all__ = [
    "RetrievalResult",
    "StsResult",
    "evaluate_retrieval",
    "evaluate_sts",
    "iter_lines",
    "ndcg_recall",
    "read_beir",
    "read_sts",
    "read_texts",
    "spearman",
    "split_train",
    "tune",
    "tune_retrieval",
]

"""PromptReps sparse vectors: the next-token logits of the pooled prompt, as a bag of words.

At the last token of a "...in one word:" prompt the model's next-token distribution
names the words it would choose for the text. PromptReps (Zhuang et al., 2024,
arXiv 2404.18424) keeps ``log(1 + relu(logits))`` for the tokens of the text's own
non-stopword words only, and the ``top_k`` (<= 128) largest of them: a weighted bag of
words scored by a dot product, like an impact index.

The LM head is applied to the **last token's final hidden state only** (one
``hidden @ W_vocab`` per text): that state is the base model's output, after its
final norm, so the logits are exactly those of ``AutoModelForCausalLM`` at that
position (Gemma-style final logit soft-capping included). The dense vector of the
same pass may come from an earlier layer; the pass then runs on to the last layer
(a few more blocks) instead of stopping there.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from promptembed._util.optional import require

if TYPE_CHECKING:
    import scipy.sparse
    import torch

TOP_K = 128
_WORD = re.compile(r"[^\W_]+")
_HEAD_ROWS = 64  # logits rows per matmul: 64 x 262k floats is 67 MB


def english_stopwords() -> frozenset[str]:
    """bm25s' English stopword list (the lexical channel uses the same one)."""
    return frozenset(require("bm25s.stopwords", "retrieval").STOPWORDS_EN)


class WordIds:
    """Token ids of a text's own non-stopword words, memoised per word.

    Each word is encoded in four spellings (as written and lower-cased, with and
    without a leading space) because the model may predict any of them after the
    prompt's closing quote; PromptReps encodes the lower-cased word alone.

    Example:
        >>> from transformers import AutoTokenizer  # doctest: +SKIP
        >>> WordIds(AutoTokenizer.from_pretrained("gpt2"))(["The cats"])  # doctest: +SKIP
        [array([...])]

    """

    def __init__(self, tokenizer: Any, lock: threading.Lock | None = None) -> None:
        self.tokenizer = tokenizer
        self.lock = lock or threading.Lock()
        self.stop = english_stopwords()
        self.memo: dict[str, tuple[int, ...]] = {}
        self.blank = frozenset(blank_token_ids(tokenizer).tolist())

    def words(self, text: str) -> set[str]:
        """The text's distinct words, stopwords removed."""
        return {w for w in _WORD.findall(text) if w.lower() not in self.stop}

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Sorted unique token ids per text."""
        per_text = [self.words(t) for t in texts]
        new = sorted({w for ws in per_text for w in ws} - self.memo.keys())
        if new:
            spellings = [s for w in new for s in (w, w.lower(), " " + w, " " + w.lower())]
            with self.lock:
                encoded = self.tokenizer(spellings, add_special_tokens=False)["input_ids"]
            for i, word in enumerate(new):
                spelled = {t for ids in encoded[4 * i : 4 * i + 4] for t in ids}
                self.memo[word] = tuple(spelled - self.blank)
        return [
            np.array(sorted({t for w in ws for t in self.memo[w]}), dtype=np.int64)
            for ws in per_text
        ]


def blank_token_ids(tokenizer: Any) -> np.ndarray:
    """Ids of tokens that are only a word-start marker or whitespace (``▁``, ``Ġ``).

    Encoding `` 0`` gives ``['▁', '0']`` in Gemma's tokenizer: the bare marker then
    comes with many words and would weigh like a stopword that every text shares.
    """
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return np.array([i for i, t in enumerate(tokens) if t is not None and not t.strip("▁Ġ Ċ")])


def output_head(model: Any, source_path: str | None) -> torch.Tensor:
    """The LM head's ``(vocab, hidden)`` weight, loaded only when sparse output is asked.

    Tied embeddings (Gemma, SmolLM2) reuse the input embedding matrix; an untied head
    is read from the checkpoint's safetensors (the base model was loaded without it).

    Raises:
        ValueError: If the head is untied and its weight cannot be found.

    """
    config = model.config.get_text_config()
    embeddings = model.get_input_embeddings().weight
    if getattr(config, "tie_word_embeddings", False):
        return embeddings

    from safetensors import safe_open

    files = sorted(Path(source_path).glob("*.safetensors")) if source_path else []
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            names = fh.keys()  # a safe_open handle is not iterable
            key = next((k for k in names if k.endswith("lm_head.weight")), None)
            if key is not None:
                return fh.get_tensor(key).to(embeddings.device, embeddings.dtype)
    raise ValueError(
        f"sparse output needs the LM head of {type(model).__name__}: its embeddings are "
        f"untied and no lm_head.weight was found in {source_path or 'an in-memory model'}"
    )


def sparse_rows(
    final: np.ndarray,
    head: torch.Tensor,
    allowed: Sequence[np.ndarray],
    softcap: float | None = None,
    top_k: int = TOP_K,
) -> scipy.sparse.csr_matrix:
    """PromptReps weights from final hidden states of the last token.

    Args:
        final: ``(members, n, hidden)`` final-layer states (one per ensemble member);
            weights are averaged over members.
        head: ``(vocab, hidden)`` LM head weight.
        allowed: Per text, the token ids it may use (its own words).
        softcap: The model's ``final_logit_softcapping``, if any.
        top_k: Keep at most this many of the largest weights per text.

    Returns:
        ``(n, vocab)`` float32 CSR matrix of non-negative weights.

    """
    import scipy.sparse
    import torch

    n = final.shape[1]
    indptr, indices, data = [0], [], []
    for start in range(0, n, _HEAD_ROWS):
        states = torch.from_numpy(final[:, start : start + _HEAD_ROWS]).to(head.device, head.dtype)
        with torch.inference_mode():
            logits = states @ head.T
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            weights = torch.log1p(torch.relu(logits.float())).mean(0).cpu().numpy()
        for row, ids in zip(weights, allowed[start : start + _HEAD_ROWS]):
            values = row[ids]
            keep = np.flatnonzero(values > 0)
            if len(keep) > top_k:
                keep = keep[np.argsort(-values[keep], kind="stable")[:top_k]]
                keep.sort()
            indices.append(ids[keep])
            data.append(values[keep])
            indptr.append(indptr[-1] + len(keep))
    cat = np.concatenate
    return scipy.sparse.csr_matrix(
        (
            cat(data).astype(np.float32) if data else np.zeros(0, np.float32),
            cat(indices) if indices else np.zeros(0, np.int64),
            np.array(indptr),
        ),
        shape=(n, head.shape[0]),
    )

"""Tokenising in sub-batches (bounded memory) gives the same ids as one text at a time."""

from __future__ import annotations

import promptembed.engine.prompts as prompts_mod
from promptembed.engine.prompts import PromptTokenizer
from promptembed.templates import Template


def test_sub_batched_encode_matches_one_by_one(tokenizer, monkeypatch):
    monkeypatch.setattr(prompts_mod, "_TOKENIZE_BATCH", 3)
    pt = PromptTokenizer(tokenizer, Template.parse("ke"), max_length=128)
    long = "A child is riding a horse. " * 30
    texts = [f"Text number {i}." if i % 4 else long for i in range(10)]
    ids, truncated = pt.encode(texts)
    singles = [pt.encode([t]) for t in texts]
    assert ids == [s[0][0] for s in singles]
    assert truncated == sum(s[1] for s in singles) == 3
    assert all(len(x) <= 128 for x in ids)

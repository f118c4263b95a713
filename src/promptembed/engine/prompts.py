"""Text → prompt token ids, truncating the text and never the template.

Prompts are tokenised whole, exactly as a plain reference computation would, so
tokens merged across the prefix/text boundary are the same as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from promptembed.templates import NORMALIZERS, Template

# A token is almost never longer than this many characters, so cutting a huge text
# here first bounds tokenisation time without cutting anything that would fit.
_CHARS_PER_TOKEN_BOUND = 32
# Prompts are tokenised this many at a time: a fast tokenizer's batch output keeps
# offsets, masks and token strings per token (~100 bytes each), so a whole 4096-text
# stream chunk of long documents at once would cost hundreds of MB; only ids are kept.
_TOKENIZE_BATCH = 256


class PromptTokenizer:
    """Renders texts into a template and tokenises them within ``max_length``.

    Args:
        tokenizer: A transformers tokenizer (no pad token needed).
        template: The template.
        max_length: Max tokens per prompt, special tokens included.
        normalize: Apply the reference sentence normalisation first.

    Raises:
        ValueError: If the template alone does not fit in ``max_length``.

    Example:
        >>> from promptembed.templates import Template
        >>> pt = PromptTokenizer(tok, Template.parse("eol"), max_length=64)  # doctest: +SKIP
        >>> ids, n_truncated = pt.encode(["A man is dancing"])  # doctest: +SKIP

    """

    def __init__(
        self,
        tokenizer: Any,
        template: Template,
        max_length: int,
        normalize: bool = True,
        placeholder: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.max_length = max_length
        self.normalize = normalize and template.normalize
        self.placeholder = placeholder
        # With a placeholder (Token Prepending) the prompt is the prefix's ids, the
        # placeholder, then the rest's ids: tokenised apart, so the cut is exact.
        self._head = self._ids(template.prefix.lstrip()) if placeholder is not None else []
        overhead = len(self._prompt_ids(""))
        if overhead >= max_length:
            raise ValueError(
                f"template {template.name!r} takes {overhead} tokens on its own, which leaves no "
                f"room for text within max_length={max_length}; raise max_length"
            )
        prefix = template.prefix.lstrip()
        # The prefix's own tokenisation; the forward pass verifies per prompt that the
        # prompt really starts with these ids before reusing their cache.
        self.prefix_ids: list[int] = self._ids(prefix)[:-1] if prefix else []
        if placeholder is not None:
            self.prefix_ids = list(self._head)
        self._fallback_id = next(
            (t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id) if t is not None), 0
        )

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    @property
    def placeholder_index(self) -> int | None:
        """Where the Token Prepending placeholder sits in every prompt (None: off)."""
        return len(self._head) if self.placeholder is not None else None

    def _prompt_ids(self, text: str) -> list[int]:
        """Ids of one prompt whose text is already normalised."""
        prompt = self.template.render(text, normalize=False)
        if self.placeholder is None:
            return self._ids(prompt)
        return self._join(self._rest(prompt))

    def _rest(self, prompt: str) -> str:
        """The prompt after the prefix (render strips, so cut by the stripped prefix)."""
        return prompt[len(self.template.prefix.lstrip()) :]

    def _join(self, rest: str | list[int]) -> list[int]:
        if isinstance(rest, str):
            rest = self.tokenizer(rest, add_special_tokens=False)["input_ids"]
        return [*self._head, self.placeholder, *rest]

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        """Token ids of each text's prompt, and how many texts were truncated."""
        if self.normalize:
            normalize = NORMALIZERS[self.template.normalizer]
            texts = [normalize(t) for t in texts]
        limit = self.max_length * _CHARS_PER_TOKEN_BOUND
        cut = [t[:limit] for t in texts]
        out: list[list[int]] = []
        truncated = 0
        for start in range(0, len(cut), _TOKENIZE_BATCH):
            part = cut[start : start + _TOKENIZE_BATCH]
            ids, n = self._encode_part(texts[start : start + _TOKENIZE_BATCH], part)
            out.extend(ids)
            truncated += n
        return out, truncated

    def _encode_part(self, texts: Sequence[str], cut: Sequence[str]) -> tuple[list[list[int]], int]:
        prompts = [self.template.render(t, normalize=False) for t in cut]
        if self.placeholder is None:
            batch = self.tokenizer(prompts, add_special_tokens=True, return_attention_mask=False)[
                "input_ids"
            ]
        else:
            rests = [self._rest(p) for p in prompts]
            tails = self.tokenizer(rests, add_special_tokens=False, return_attention_mask=False)
            batch = [self._join(list(ids)) for ids in tails["input_ids"]]
        out: list[list[int]] = []
        truncated = 0
        for original, text, ids in zip(texts, cut, batch):
            was_cut = len(text) != len(original)
            ids = list(ids)
            if len(ids) > self.max_length:
                ids = self._truncate(text, len(ids) - self.max_length)
                was_cut = True
            truncated += was_cut
            out.append(ids or [self._fallback_id])
        return out, truncated

    def _truncate(self, text: str, excess: int) -> list[int]:
        """Cut ``text`` by whole tokens until its prompt fits; the suffix survives."""
        tok = self.tokenizer
        if getattr(tok, "is_fast", False):
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ends = [end for _, end in enc["offset_mapping"]]
        else:  # slow tokenizers have no offsets: rebuild the text from kept tokens
            pieces = tok(text, add_special_tokens=False)["input_ids"]
            ends = [len(tok.decode(pieces[: k + 1])) for k in range(len(pieces))]
        copies = self.template.copies  # an echo template spends each text token twice
        keep = len(ends) - -(-excess // copies)
        ids: list[int] = []
        for _ in range(16):
            keep = max(keep, 0)
            head = text[: ends[keep - 1]] if keep > 0 else ""
            ids = self._prompt_ids(head)
            if len(ids) <= self.max_length or keep == 0:
                return ids
            keep -= -(-(len(ids) - self.max_length) // copies)
        return ids

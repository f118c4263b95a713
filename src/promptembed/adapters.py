"""What the LangChain, LlamaIndex and Chroma adapters share, so they cannot diverge.

* :class:`SharedEmbedderMixin`: a config, the lazily loaded shared embedder, the
  guard on the first write into a collection found in the caller's frames.
* :class:`AdapterFields`: the pydantic part of the LangChain and LlamaIndex adapters:
  the ``config`` field, flat keyword fields gathered into it, the Hugging Face
  argument names users bring (:data:`HF_ARGUMENTS`), ``from_config``/``from_embedder``.

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

from promptembed.config import Config, EmbedderConfig, load_config
from promptembed.config.hf_names import translate_hf_arguments
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

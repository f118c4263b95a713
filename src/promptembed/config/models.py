"""The validated configuration models: one source of truth for every face.

The same pydantic models serve the Python API (``PromptEmbedder(**fields)``), the
TOML config file, the CLI and the config that Chroma persists with a collection.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from promptembed.config.aliases import PAPER_TEMPLATE, default_templates
from promptembed.config.mteb import MtebConfig
from promptembed.templates import BUILTIN_TEMPLATES, RERANK_PROMPTS, Template

Pooling = Literal["last", "mean"]
_COLLECTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
# PyStemmer's Snowball algorithms (Stemmer.algorithms(); a test keeps the two equal), listed
# here so that the config layer checks a stemmer without importing the retrieval extra.
STEMMERS = frozenset(
    {
        "arabic", "armenian", "basque", "catalan", "czech", "danish", "dutch", "dutch_porter",
        "english", "esperanto", "estonian", "finnish", "french", "german", "greek", "hindi",
        "hungarian", "indonesian", "irish", "italian", "lithuanian", "nepali", "norwegian",
        "persian", "polish", "porter", "portuguese", "romanian", "russian", "serbian",
        "sesotho", "spanish", "swedish", "tamil", "turkish", "yiddish",
    }
)  # fmt: skip
DType = Literal["auto", "float32", "bfloat16", "float16", "int8"]
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


# from_pretrained arguments set from config fields (or never): refused in model_kwargs.
MANAGED_MODEL_KWARGS = (
    "cache_dir",
    "device_map",
    "dtype",
    "gguf_file",
    "quantization_config",
    "revision",
    "token",
    "torch_dtype",
    "trust_remote_code",
)


DEFAULT_API_KEY_ENV = "PROMPTEMBED_API_KEY"
"""The variable holding the server's API key: read by `promptembed serve` (when set, it is
the key with no config at all) and by a client (`[embedder] server`)."""


class EmbedderConfig(BaseModel):
    """How text becomes a vector.

    Example:
        >>> EmbedderConfig(model="smollm2-135m", template="cot").layer is None
        True

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(
        "gemma-3-270m",
        description="Alias (gemma-3-270m, smollm2-135m), hub id, local directory or .gguf path.",
    )
    gguf_file: str | None = Field(
        None, description="GGUF file name inside `model` when `model` is a directory or hub id."
    )
    template: str | list[str] = Field(
        PAPER_TEMPLATE,
        description=f"Built-in name ({', '.join(BUILTIN_TEMPLATES)}), optionally `name@layer`, "
        "or a string with one {text} (two for an echo template); a list is an ensemble that "
        "averages its members' unit vectors. Default: the alias's best measured template "
        "(gemma-3-270m: eol, smollm2-135m: ke), else the paper's best, ke.",
    )
    query_template: str | list[str] | None = Field(
        None,
        description="Template(s) for queries in retrieval; defaults to `template`, or, when "
        "`template` is not set either, to the alias's measured query prompt "
        "(gemma-3-270m: query).",
    )
    layer: int | None = Field(
        None,
        description="Pooled hidden layer as in `hidden_states` (-1 last, -2 second-to-last); "
        "defaults to the template's own layer.",
    )
    pooling: Pooling = Field("last", description="`last` token of the prompt, or `mean` of all.")
    normalize_text: bool = Field(
        True, description="Apply the paper's sentence normalisation before templating."
    )
    normalize_embeddings: bool = Field(True, description="L2-normalise the output vectors.")
    device: str = Field("auto", description="auto (cuda, then mps, then cpu), cpu, mps, cuda[:N].")
    dtype: DType = Field(
        "auto",
        description="auto means bf16/fp16 on GPU and float32 on CPU. int8 (CPU only, "
        "`pip install 'promptembed[int8]'`): the decoder's linear layers run with int8 "
        "weights and dynamically quantised int8 activations (torchao), the rest in float32; "
        "1.5-2x the batch throughput on CPUs with AVX-512 VNNI (not faster for one short "
        "query), vectors at cosine ~0.99 from float32.",
    )
    max_length: int = Field(
        512, ge=8, description="Max tokens per prompt; only the text is truncated."
    )
    batch_size: int = Field(64, ge=1, description="Max texts per forward pass.")
    max_batch_tokens: int = Field(
        16384, ge=64, description="Max padded tokens per forward pass (token-budget batching)."
    )
    replicas: int | None = Field(
        None,
        ge=1,
        description="Model replicas that share each call's batches; default one per visible "
        "GPU when device is auto/cuda (data parallel), else 1.",
    )
    prefix_cache: bool = Field(
        True, description="Reuse the key/value cache of the template's constant prefix."
    )
    trust_remote_code: bool = Field(
        False,
        description="Let transformers run code from the model repository. Never stored.",
    )
    cache_dir: str | None = Field(
        None, description="Where converted GGUF copies live; default ~/.cache/promptembed."
    )
    show_progress: bool = Field(False, description="Show a progress bar while embedding.")
    embedding_cache: str | None = Field(
        None,
        description="Directory of an on-disk embedding cache (SQLite, raw float32 with "
        "checksums; created mode 0700); off when unset. In a config file, a relative path is "
        "relative to the file.",
    )

    # -- client mode: embed through a running `promptembed serve` (engine/remote.py) ------
    server: str | None = Field(
        None,
        description="URL of a running `promptembed serve` (e.g. `http://gpu-box:8080`) to "
        "embed through instead of loading the model here; the server's embedder (model, "
        "templates, weights, precision) then makes the vectors and names their identity. "
        "Fields set next to it must agree with the server's.",
    )
    server_api_key_env: str = Field(
        DEFAULT_API_KEY_ENV,
        min_length=1,
        description="Environment variable holding the server's API key (sent as a bearer "
        "token when set). Only the variable's name is configured; the key is never stored.",
    )

    @field_validator("server")
    @classmethod
    def _check_server(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = value.strip().rstrip("/").removesuffix("/v1").rstrip("/")
        scheme, _, rest = url.partition("://")
        if scheme not in ("http", "https") or not rest.split("/")[0]:
            raise ValueError(
                f"server {value!r} is not a server URL: use http(s)://host:port, e.g. "
                "'http://127.0.0.1:8080' (where `promptembed serve` listens)"
            )
        return url

    calibration: str | None = Field(
        None,
        description="Path of a fitted calibration file (`promptembed calibrate`), applied to "
        "documents and queries alike; its name carries its content hash.",
    )

    # -- how the weights are fetched and placed (loading.py) -------------------------------
    revision: str | None = Field(
        None,
        description="Hub revision (branch, tag or commit) of `model`. It changes the "
        "weights, so when set it is part of the identity a collection records.",
    )
    token_env: str | None = Field(
        None,
        min_length=1,
        description="Environment variable holding a hub token for private or gated models "
        "(default: huggingface_hub's own lookup, HF_TOKEN or a saved login). Only the "
        "variable's name is configured; the token is never stored.",
    )
    device_map: str | dict[str, int | str] | None = Field(
        None,
        description="transformers' `device_map` (e.g. `auto`) to spread a large model over "
        "devices with accelerate; the model is then loaded in place in `dtype`, not moved, "
        "and `replicas` must stay 1.",
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments for `from_pretrained` (e.g. "
        "`attn_implementation`). Keys promptembed manages itself are refused: "
        + ", ".join(MANAGED_MODEL_KWARGS)
        + ".",
    )

    @field_validator("model_kwargs")
    @classmethod
    def _check_model_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        managed = sorted(set(value) & set(MANAGED_MODEL_KWARGS))
        if managed:
            raise ValueError(
                f"model_kwargs may not set {', '.join(managed)}: promptembed manages them; "
                "use the config fields dtype, device, device_map, revision, token_env, "
                "gguf_file, trust_remote_code or cache_dir instead"
            )
        try:
            json.dumps(value)
        except TypeError as error:
            raise ValueError(f"model_kwargs must be JSON values (it is stored): {error}") from None
        return value

    @model_validator(mode="after")
    def _check_placement(self) -> EmbedderConfig:
        if self.device_map is not None and self.replicas not in (None, 1):
            raise ValueError(
                f"device_map={self.device_map!r} spreads one model over devices; it cannot be "
                f"combined with replicas={self.replicas} (data-parallel copies)"
            )
        return self

    def __hash__(self) -> int:
        # Lists (template ensembles) and dicts (model_kwargs) are not hashable: hash the
        # canonical JSON, which equal configs share (embedders are shared per config).
        return hash(json.dumps(self.model_dump(), sort_keys=True, default=str))

    # -- boosters II: in-context demonstrations and Token Prepending ------------------
    demonstrations: list[tuple[str, str]] | None = Field(
        None,
        description="In-context examples `[[sentence, word], ...]` shown before the text in "
        "each template's own format (PromptEOL ICL); part of the cached prefix, so free "
        "per text.",
    )
    token_prepending: tuple[int, int] | None = Field(
        None,
        description="Token Prepending (arXiv 2412.11556): `[start, end]` decoder blocks "
        "(0-based, start >= 1) whose input at a placeholder token before the text is "
        "overwritten with the previous block's output at the pooled token; off when unset.",
    )

    contrastive: tuple[int, float] | None = Field(
        None,
        description="Contrastive prompting (arXiv 2505.12831): `[block, alpha]`; in that "
        "decoder block (0-based) the pooled token's attention values become "
        "alpha * (own - those of an auxiliary 'irrelevant information' prompt). Costs a "
        "second pass up to that block per text; off when unset.",
    )

    @field_validator("contrastive")
    @classmethod
    def _check_contrastive(cls, value: tuple[int, float] | None) -> tuple[int, float] | None:
        if value is not None and (value[0] < 0 or value[1] <= 0):
            raise ValueError(
                f"contrastive must be [block, alpha] with block >= 0 and alpha > 0, "
                f"got {list(value)}"
            )
        return value

    @field_validator("demonstrations")
    @classmethod
    def _check_demonstrations(
        cls, value: list[tuple[str, str]] | None
    ) -> list[tuple[str, str]] | None:
        if value is not None and any(not s.strip() or not w.strip() for s, w in value):
            raise ValueError(
                f"each demonstration needs a non-empty sentence and word, got {value!r}"
            )
        return value or None

    @field_validator("token_prepending")
    @classmethod
    def _check_token_prepending(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] < value[1]:
            raise ValueError(
                f"token_prepending must be [start, end] with 1 <= start < end, got {list(value)}"
            )
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _alias_defaults(cls, data: Any, handler: Any) -> EmbedderConfig:
        # Neither template given: the model's measured defaults (config/aliases.py). They
        # stay out of model_fields_set, so a copy with another model re-derives them.
        filled: list[str] = []
        if isinstance(data, dict) and "template" not in data:
            template, query = default_templates(
                data.get("model", cls.model_fields["model"].default)
            )
            data = {**data, "template": template}
            filled.append("template")
            if "query_template" not in data:
                data["query_template"] = query
                filled.append("query_template")
        config = handler(data)
        config.__pydantic_fields_set__.difference_update(filled)
        return config

    @field_validator("template", "query_template")
    @classmethod
    def _check_template(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("a template ensemble needs at least one template")
            for spec in value:
                Template.parse(spec)
        elif value is not None:
            Template.parse(value)
        return value

    @property
    def templates(self) -> list[str]:
        """The document template(s) as a list (one item unless an ensemble)."""
        return [self.template] if isinstance(self.template, str) else list(self.template)

    @property
    def query_templates(self) -> list[str]:
        """The query template(s) as a list; the document ones when not set."""
        if self.query_template is None:
            return self.templates
        q = self.query_template
        return [q] if isinstance(q, str) else list(q)

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE_RE.match(value):
            raise ValueError(
                f"device {value!r} is not valid; use one of auto, cpu, mps, cuda, cuda:N"
            )
        return value


class StoreConfig(BaseModel):
    """Where vectors are kept: an embedded Chroma (``path``) or a Chroma server.

    Example:
        >>> StoreConfig(path="./chroma", collection="docs").mode
        'persistent'

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(None, description="Directory of an embedded PersistentClient.")
    host: str | None = Field(None, description="Host of a Chroma server (`chroma run`).")
    port: int = Field(8000, ge=1, le=65535, description="Port of the Chroma server.")
    ssl: bool = Field(False, description="Use HTTPS for the Chroma server.")
    collection: str = Field(
        "promptembed",
        description="Collection name: 3-512 characters of letters, digits, `.`, `_` and `-`, "
        "starting and ending with a letter or digit, without `..` (Chroma's rule).",
    )

    @field_validator("collection")
    @classmethod
    def _check_collection(cls, value: str) -> str:
        # Chroma's own rule, checked here so a bad name creates no database first.
        if (
            not _COLLECTION_RE.fullmatch(value)
            or ".." in value
            or _IPV4_RE.fullmatch(value) is not None
        ):
            raise ValueError(
                f"store.collection {value!r} is not a valid Chroma collection name: use 3-512 "
                "characters of letters, digits, '.', '_' and '-', starting and ending with a "
                "letter or digit, with no '..' and not an IPv4 address (e.g. 'docs')"
            )
        return value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        where = Path(value).expanduser() if value is not None else None
        if where is not None and where.exists() and not where.is_dir():
            raise ValueError(
                f"store.path {value!r} exists and is not a directory: an embedded Chroma "
                "store is a folder; name a new or existing folder"
            )
        return value

    @model_validator(mode="after")
    def _one_location(self) -> StoreConfig:
        if (self.path is None) == (self.host is None):
            raise ValueError(
                f"store needs exactly one of `path` or `host`; got path={self.path!r}, "
                f"host={self.host!r}"
            )
        return self

    @property
    def mode(self) -> Literal["persistent", "http"]:
        """``persistent`` for a local path, ``http`` for a server."""
        return "persistent" if self.path is not None else "http"


class IndexConfig(BaseModel):
    """How files are cut into chunks before they are embedded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk_size: int = Field(256, ge=16, description="Chunk size in splitter tokens.")
    chunk_overlap: int = Field(
        32, ge=0, description="Overlap between chunks, in tokens; less than `chunk_size`."
    )

    @model_validator(mode="after")
    def _check_overlap(self) -> IndexConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"index.chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"index.chunk_size ({self.chunk_size}): valid overlaps are 0..{self.chunk_size - 1}"
            )
        return self


class ServerConfig(BaseModel):
    """The HTTP server (``promptembed serve``): address, limits, API key and batching.

    Every limit answers with a 4xx JSON error when exceeded, never a crash. A request
    may carry at most ``max_inputs_per_request`` texts, so that value must not exceed
    ``max_queued_inputs`` (else such a request could never be accepted).

    Example:
        >>> cfg = ServerConfig(port=9000, max_inputs_per_request=64)
        >>> cfg.host, cfg.port, cfg.max_chars_per_input
        ('127.0.0.1', 9000, 100000)

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        "127.0.0.1", min_length=1, description="Interface to bind; 0.0.0.0 exposes the server."
    )
    port: int = Field(8080, ge=1, le=65535, description="TCP port to bind.")
    model_name: str | None = Field(
        None,
        min_length=1,
        description="Model id reported by /v1/models and in responses; default the "
        "embedder's `model`. Requests may name any model: this server serves one.",
    )
    api_key: SecretStr | None = Field(
        None,
        description="If set, every /v1 request needs `Authorization: Bearer <key>` "
        "(compared in constant time). Prefer `api_key_env` over a key in a file.",
    )
    api_key_env: str | None = Field(
        DEFAULT_API_KEY_ENV,
        min_length=1,
        description="Name of an environment variable holding the API key. The default, "
        "`PROMPTEMBED_API_KEY`, protects the server whenever it is set; any other name must "
        "be set when the server starts.",
    )
    max_inputs_per_request: int = Field(
        2048, ge=1, description="Max texts in one request (413 above)."
    )
    max_chars_per_input: int = Field(
        100_000, ge=1, description="Max characters in one text (413 above)."
    )
    max_request_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Max request body size in bytes (413 above)."
    )
    max_queued_inputs: int = Field(
        8192,
        ge=1,
        description="Max texts accepted and not yet answered, over all requests; beyond "
        "it a request gets 429 with Retry-After (back-pressure).",
    )
    max_batch_inputs: int = Field(
        256,
        ge=1,
        description="Max texts gathered from concurrent requests into one embedding call "
        "(a larger single request still runs whole).",
    )
    max_batch_wait_ms: float = Field(
        5.0,
        ge=0,
        le=10_000,
        description="How long the batcher waits for more requests before running a batch "
        "that is not full; 0 runs at once.",
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After seconds sent with 429.")
    default_kind: Literal["document", "query"] = Field(
        "document",
        description="Template route for requests that do not send the `kind` extension field.",
    )
    graceful_shutdown_s: float = Field(
        30.0, ge=0, description="On shutdown, how long in-flight requests may take to finish."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="uvicorn's log level."
    )
    insecure: bool = Field(
        False,
        description="Allow binding beyond loopback without an API key (anyone who can reach "
        "the port may use the server). `promptembed serve --insecure`.",
    )

    @model_validator(mode="after")
    def _check(self) -> ServerConfig:
        if self.api_key is not None and self.api_key_env not in (None, DEFAULT_API_KEY_ENV):
            raise ValueError("server needs at most one of `api_key` or `api_key_env`")
        if self.api_key is not None and not self.api_key.get_secret_value():
            raise ValueError("server.api_key must not be empty")
        if self.max_inputs_per_request > self.max_queued_inputs:
            raise ValueError(
                f"max_inputs_per_request ({self.max_inputs_per_request}) must not exceed "
                f"max_queued_inputs ({self.max_queued_inputs})"
            )
        return self

    def check_binding(self) -> None:
        """Refuse to listen beyond loopback without an API key, unless ``insecure``.

        Raises:
            ValueError: Saying how to set a key or how to opt out.

        """
        keyed = (
            self.api_key is not None
            or self.api_key_env not in (None, DEFAULT_API_KEY_ENV)  # must be set to start
            or bool(os.environ.get(DEFAULT_API_KEY_ENV) and self.api_key_env)
        )
        if not (self.insecure or keyed or _loopback(self.host)):
            raise ValueError(
                f"server.host={self.host!r} is reachable beyond this machine but no API key is "
                "set: set server.api_key_env (or api_key), bind 127.0.0.1, or pass --insecure "
                "(server.insecure = true) to serve without a key"
            )

    def resolved_api_key(self) -> str | None:
        """The API key to enforce, read from ``api_key`` or the ``api_key_env`` variable.

        Raises:
            ValueError: If ``api_key_env`` names a variable that is unset or empty.

        """
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env)
        if not value and self.api_key_env == DEFAULT_API_KEY_ENV:
            return None  # the default variable is optional: unset means no key
        if not value:
            raise ValueError(
                f"server.api_key_env names ${self.api_key_env}, which is unset or empty"
            )
        return value


def _loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


class RayConfig(BaseModel):
    """Bulk embedding on Ray (``promptembed index --ray``, :mod:`promptembed.ray`).

    One actor holds one model. With GPUs in the cluster each actor takes
    ``num_gpus_per_worker`` GPUs (one per GPU by default); without, each takes
    ``num_cpus_per_worker`` CPUs.

    Example:
        >>> RayConfig(num_workers=2).batch_size
        256

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = Field(
        None,
        description="Ray cluster to join (`auto`, `ray://head:10001`); unset: $RAY_ADDRESS, "
        "else a local Ray started by `ray.init()`. Ignored when Ray is already initialised.",
    )
    num_workers: int | None = Field(
        None,
        ge=1,
        description="Actors (model copies) in the pool; default one per GPU slot when the "
        "cluster has GPUs, else one per `num_cpus_per_worker` CPUs.",
    )
    num_gpus_per_worker: float | None = Field(
        None,
        ge=0,
        description="GPUs per actor; unset: 1 when the cluster has GPUs (and the embedder's "
        "device is not cpu), else 0. 0 forces CPU actors.",
    )
    num_cpus_per_worker: float = Field(
        1.0, gt=0, description="CPUs per CPU actor (its torch threads)."
    )
    batch_size: int = Field(
        256, ge=1, description="Chunks per actor call: one embed call and one Chroma upsert."
    )


class RerankConfig(BaseModel):
    """Query-likelihood reranking of the first stage's best candidates, by the same model.

    Each of the top ``top_k`` candidates is scored by the mean log-probability the
    embedder's model gives the query after a prompt showing the candidate
    (:meth:`~promptembed.PromptEmbedder.query_likelihood`). Both that score and the
    first-stage score are min-max normalised over the ``top_k`` and mixed:
    ``weight * likelihood + (1 - weight) * first stage``. Candidates below ``top_k``
    keep their order, after the reranked ones.

    Example:
        >>> RerankConfig(top_k=20, weight=0.7).prompt
        'auto'

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["query-likelihood"] = Field(
        "query-likelihood", description="`query-likelihood`: log P(query | prompt(passage))."
    )
    top_k: int = Field(10, ge=1, le=1000, description="First-stage candidates reranked.")
    weight: float = Field(
        0.5,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Share of the reranker's (min-max normalised) score; the rest is the "
        "first stage's. 1: the reranker's order alone.",
    )
    prompt: str = Field(
        "auto",
        description="`auto` (`zh` for a query with Han characters, else `en`), `en`, `zh`, "
        "or a prompt of your own with a `{passage}` field; the query follows it.",
    )
    max_passage_tokens: int = Field(
        128, ge=1, description="Each candidate is cut to this many tokens first."
    )
    batch_size: int = Field(8, ge=1, description="(query, passage) pairs per forward pass.")

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str) -> str:
        if value not in ("auto", *RERANK_PROMPTS) and "{passage}" not in value:
            raise ValueError(
                f"retrieval.rerank.prompt must be one of {['auto', *RERANK_PROMPTS]} or a "
                f"prompt with a {{passage}} field, got {value!r}"
            )
        return value


Channel = Literal["dense", "bm25", "sparse"]


class RetrievalConfig(BaseModel):
    """How queries are answered: dense vectors alone, or fused with lexical channels.

    ``hybrid`` ranks each channel's top ``candidates`` and fuses them once, in
    :mod:`promptembed.retrieval.fusion`: ``dense`` (the Chroma vectors), ``bm25``
    (bm25s over the same chunks) and ``sparse`` (PromptReps: the model's own
    next-token logits over the text's words).

    Example:
        >>> cfg = RetrievalConfig(mode="hybrid", weights={"dense": 0.3, "bm25": 0.7})
        >>> cfg.channels, cfg.fusion
        (['dense', 'bm25'], 'weighted')

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["dense", "hybrid"] = Field(
        "dense", description="`dense`: vectors only; `hybrid`: fuse `channels`."
    )
    channels: list[Channel] = Field(
        ["dense", "bm25"], description="Channels fused in hybrid mode: dense, bm25, sparse."
    )
    fusion: Literal["rrf", "weighted"] = Field(
        "weighted",
        description="`weighted`: min-max normalised weighted sum; `rrf`: reciprocal rank.",
    )
    weights: dict[Channel, Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=dict,
        description="Weight per channel, finite and >= 0 (a missing one weighs 1).",
    )
    candidates: int = Field(100, ge=1, le=100_000, description="Top hits taken per channel.")
    rrf_k: int = Field(60, ge=1, description="Constant of reciprocal rank fusion.")
    stemmer: str = Field(
        "english",
        description="Snowball stemmer (PyStemmer) for bm25, by language name; empty: none.",
    )
    bm25_k1: float = Field(
        1.2, gt=0, allow_inf_nan=False, description="BM25 term-frequency saturation."
    )
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation.")

    @field_validator("stemmer")
    @classmethod
    def _check_stemmer(cls, value: str) -> str:
        if value and value not in STEMMERS:
            raise ValueError(
                f"retrieval.stemmer {value!r} is not a Snowball stemmer; valid: "
                f"{', '.join(sorted(STEMMERS))}, or '' for none"
            )
        return value

    rerank: RerankConfig | None = Field(
        None,
        description="Rerank the best candidates by query likelihood (a `[retrieval.rerank]` "
        "table); unset: no reranking.",
    )
    lexical_path: str | None = Field(
        None,
        description="Folder of the side indexes (BM25 folder and sparse `.sparse.npz` per "
        "collection); default `<store.path>/promptembed-lexical` for an embedded store "
        "(required for a Chroma server).",
    )

    @model_validator(mode="after")
    def _check(self) -> RetrievalConfig:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"retrieval.channels has duplicates: {self.channels}")
        if self.mode == "dense":
            # Set to anything but its default (a dumped config carries the defaults).
            tuned = [
                name
                for name in ("channels", "fusion", "weights")
                if getattr(self, name)
                != RetrievalConfig.model_fields[name].get_default(call_default_factory=True)
            ]
            if tuned:
                raise ValueError(
                    f"retrieval.{sorted(tuned)[0]} only applies with mode = 'hybrid' "
                    "(valid modes: 'dense', 'hybrid')"
                )
        elif len(self.channels) < 2:
            raise ValueError(
                f"hybrid retrieval fuses at least two channels of ['dense', 'bm25', "
                f"'sparse'], got {self.channels}"
            )
        unknown = set(self.weights) - set(self.channels)
        if unknown:
            raise ValueError(
                f"retrieval.weights names {sorted(unknown)}, not in channels {self.channels}"
            )
        negative = {c: w for c, w in self.weights.items() if w < 0}
        if negative:
            raise ValueError(f"retrieval.weights must be >= 0, got {negative}")
        return self

    @property
    def active(self) -> list[str]:
        """The channels a query runs: ``["dense"]`` in dense mode."""
        return ["dense"] if self.mode == "dense" else list(self.channels)


class Config(BaseModel):
    """The whole configuration: embedder, optional store, indexing, the server and Ray.

    Example:
        >>> cfg = load_config({"embedder": {"template": "eol"}, "store": {"path": "db"}})
        >>> cfg.embedder.template, cfg.store.collection
        ('eol', 'promptembed')

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    store: StoreConfig | None = None
    index: IndexConfig = Field(default_factory=IndexConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    mteb: MtebConfig = Field(default_factory=MtebConfig)

    @model_validator(mode="after")
    def _check_model_in_process(self) -> Config:
        """Sparse vectors and reranking read the model's logits: a client has no model."""
        needs = [
            name
            for name, used in (
                ("retrieval.channels 'sparse'", "sparse" in self.retrieval.active),
                ("[retrieval.rerank]", self.retrieval.rerank is not None),
            )
            if used
        ]
        if self.embedder.server and needs:
            raise ValueError(
                f"{' and '.join(needs)} need the model in this process, but [embedder] "
                f"server = {self.embedder.server!r} embeds on a server that returns dense "
                "vectors only; drop the server (load the model here) or those settings"
            )
        return self

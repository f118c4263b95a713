"""PromptEmbedder: validate → tokenise (suffix-safe) → batch → forward → pool → normalise."""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from promptembed.batching import plan_batches
from promptembed.config import EmbedderConfig
from promptembed.templates import Template

if TYPE_CHECKING:
    import scipy.sparse
    import torch

    from promptembed.cache import EmbeddingCache
    from promptembed.calibration import Calibration
    from promptembed.forward import LayerForward
    from promptembed.loading import LoadedModel
    from promptembed.prompts import PromptTokenizer
    from promptembed.sparse import WordIds

Kind = Literal["document", "query"]
_STREAM_CHUNK = 4096


def check_texts(texts: object) -> list[str]:
    """Validate the input of ``embed``: a string or a sequence of strings.

    Raises:
        TypeError: On ``None``, bytes, numbers or any non-string item, naming its index.

    Example:
        >>> check_texts(["a", "b"])
        ['a', 'b']

    """
    if isinstance(texts, str):
        return [texts]
    if texts is None or isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be str, got {type(text).__name__}: {text!r:.80}")
    return list(texts)


class _Route:
    """One template: its tokenizer, a forward pass per model replica, and its cache."""

    def __init__(
        self,
        prompts: PromptTokenizer,
        forwards: list[LayerForward],
        cache: EmbeddingCache | None,
    ) -> None:
        self.prompts = prompts
        self.forwards = forwards
        self.cache = cache

    @property
    def forward(self) -> LayerForward:
        """The first replica's forward pass."""
        return self.forwards[0]


class PromptEmbedder:
    """Sentence embeddings from a generative LLM through a prompt, without fine-tuning.

    Every field of :class:`~promptembed.config.EmbedderConfig` is a keyword argument
    (``model``, ``template``, ``query_template``, ``layer``, ``pooling``, ``device``,
    ``dtype``, ``max_length``, ``batch_size``, ...).

    Args:
        model: Alias (``gemma-3-270m``, ``smollm2-135m``), hub id, directory or .gguf.
        config: A whole config instead of keyword fields.
        **fields: Other :class:`EmbedderConfig` fields.

    Example:
        >>> emb = PromptEmbedder("smollm2-135m", template="ke")  # doctest: +SKIP
        >>> emb.embed(["A man is playing a guitar.", "Un homme joue."]).shape  # doctest: +SKIP
        (2, 576)
        >>> emb.embed("one text").shape  # doctest: +SKIP
        (576,)

    """

    def __init__(
        self, model: str | None = None, *, config: EmbedderConfig | None = None, **fields: Any
    ) -> None:
        if config is not None and (fields or model is not None):
            raise TypeError("pass either config= or keyword fields, not both")
        if config is None:
            config = EmbedderConfig(**({"model": model} if model is not None else {}), **fields)
        from promptembed.loading import load_model

        self._setup(config, load_model(config))

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, **fields: Any) -> PromptEmbedder:
        """Wrap an already loaded transformers base model and tokenizer.

        The model is used on its current device and dtype.

        Example:
            >>> emb = PromptEmbedder.from_model(model, tokenizer, template="eol")  # doctest: +SKIP

        """
        from promptembed.loading import LoadedModel

        param = next(model.parameters())
        name = getattr(model.config, "name_or_path", "") or type(model).__name__
        config = EmbedderConfig(**{"model": name, **fields})
        loaded = LoadedModel(model.eval(), tokenizer, param.device, param.dtype, "in-memory")
        self = cls.__new__(cls)
        self._setup(config, loaded)
        return self

    def _setup(self, config: EmbedderConfig, loaded: LoadedModel) -> None:
        self.config = config
        self._loaded = loaded
        # One model per device: extra replicas (data parallel over GPUs) are copies.
        from promptembed.loading import replica_devices

        devices = replica_devices(config.device, loaded.device, config.replicas)
        self._models = [loaded.model] + [
            copy.deepcopy(loaded.model).to(device) for device in devices[1:]
        ]
        # One forward at a time per replica: hooks and prefix caches are per model.
        self._locks = [threading.Lock() for _ in self._models]
        # Fast tokenizers are not re-entrant ("Already borrowed"); a separate lock lets one
        # thread tokenise while another runs the model.
        self._tokenizer_lock = threading.Lock()
        built: dict[str, _Route] = {}  # a template used by both kinds is built once

        def ensemble(specs: list[str]) -> list[_Route]:
            for spec in specs:
                if spec not in built:
                    built[spec] = self._route(spec)
            return [built[spec] for spec in specs]

        self._routes: dict[Kind, list[_Route]] = {
            "document": ensemble(config.templates),
            "query": ensemble(config.query_templates),
        }
        self._sparse_routes: dict[Kind, list[_Route]] = {}
        self._sparse_head: torch.Tensor | None = None  # loaded on the first sparse call
        self._word_ids: WordIds | None = None
        self._calibration: Calibration | None = None
        if config.calibration:
            from promptembed.calibration import Calibration

            self._calibration = Calibration.load(config.calibration)
            self._calibration.check(self.config, self.hidden_size)

    def _route(self, spec: str, layers: list[int] | None = None) -> _Route:
        from promptembed.forward import LayerForward
        from promptembed.prompts import PromptTokenizer

        cfg, tok = self.config, self._loaded.tokenizer
        template = Template.parse(spec)
        prompts = PromptTokenizer(tok, template, cfg.max_length, cfg.normalize_text)
        # Pads sit right of every real token, so any id the embedding table has will do;
        # some tokenizers' pad id lies outside the model's vocabulary.
        vocab = self._loaded.model.get_input_embeddings().num_embeddings
        candidates = (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id)
        pad = next((t for t in candidates if t is not None and 0 <= t < vocab), 0)
        layer = cfg.layer if cfg.layer is not None else template.layer
        chosen: int | list[int] = layers if layers is not None else layer
        forwards = [LayerForward(m, chosen, cfg.pooling, pad_id=pad) for m in self._models]
        if cfg.prefix_cache and prompts.prefix_ids:
            for forward, lock in zip(forwards, self._locks):
                with lock:
                    forward.set_prefix(prompts.prefix_ids)
        forward = forwards[0]
        cache = None
        if cfg.embedding_cache and layers is None:
            from promptembed.cache import EmbeddingCache

            if self._loaded.fingerprint == "in-memory":
                raise ValueError(
                    "embedding_cache needs a model loaded by name or path, "
                    "not one passed in memory (its weights have no fingerprint)"
                )
            identity = {
                **cfg.identity(),
                "template": template.text,
                "layer": forward.layer,
                "normalize": prompts.normalize,
                "weights": self._loaded.fingerprint,
                "dtype": str(self._loaded.dtype),
            }
            cache = EmbeddingCache(cfg.embedding_cache, identity)
        return _Route(prompts, forwards, cache)

    # -- properties ---------------------------------------------------------------------
    @property
    def model(self) -> torch.nn.Module:
        """The underlying transformers module (base model, no LM head)."""
        return self._loaded.model

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer."""
        return self._loaded.tokenizer

    @property
    def hidden_size(self) -> int:
        """Width of the model's hidden states (the vector before any calibration)."""
        return int(self.model.config.get_text_config().hidden_size)

    @property
    def dimension(self) -> int:
        """Length of each embedding vector (reduced if a calibration says so)."""
        return self._calibration.dimension if self._calibration else self.hidden_size

    @property
    def calibration(self) -> Calibration | None:
        """The fitted post-processing applied to every vector, if configured."""
        return self._calibration

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self._loaded.device

    @property
    def fingerprint(self) -> str:
        """Identity of the loaded weights."""
        return self._loaded.fingerprint

    # -- embedding ------------------------------------------------------------------------
    @overload
    def embed(
        self, texts: str, *, batch_size: int | None = ..., kind: Kind = ...
    ) -> np.ndarray: ...
    @overload
    def embed(
        self, texts: Sequence[str], *, batch_size: int | None = ..., kind: Kind = ...
    ) -> np.ndarray: ...
    def embed(
        self, texts: str | Sequence[str], *, batch_size: int | None = None, kind: Kind = "document"
    ) -> np.ndarray:
        """Embed one text (shape ``(dim,)``) or a sequence (shape ``(n, dim)``), in order.

        Args:
            texts: A string or a sequence of strings. Empty strings are valid.
            batch_size: Max texts per forward pass (default from the config).
            kind: ``document`` or ``query``: which template route to use.

        Returns:
            float32 array, L2-normalised unless ``normalize_embeddings=False``.

        Raises:
            TypeError: If the input or one of its items is not a string.

        """
        items = check_texts(texts)
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        start = 0
        for chunk in self.embed_iter(items, batch_size=batch_size, kind=kind):
            out[start : start + len(chunk)] = chunk
            start += len(chunk)
        return out[0] if isinstance(texts, str) else out

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Total tokens of the texts themselves (no template, no special tokens).

        Safe to call while other threads embed.
        """
        items = check_texts(texts)
        with self._tokenizer_lock:
            ids = self.tokenizer(items, add_special_tokens=False)["input_ids"] if items else []
        return sum(len(x) for x in ids)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query with the query template; shape ``(dim,)``."""
        return self.embed(text, kind="query")

    def embed_iter(
        self,
        texts: Iterable[str],
        *,
        batch_size: int | None = None,
        kind: Kind = "document",
        chunk_size: int = _STREAM_CHUNK,
    ) -> Iterator[np.ndarray]:
        """Stream embeddings: yields ``(<=chunk_size, dim)`` arrays in input order.

        Memory stays bounded by ``chunk_size`` whatever the length of ``texts``
        (a generator over a file works).
        """
        if kind not in self._routes:
            raise ValueError(f"kind must be one of {list(self._routes)}, got {kind!r}")
        if isinstance(texts, str) or texts is None:
            texts = check_texts(texts)
        from tqdm.auto import tqdm

        members = len(self._routes[kind])  # an ensemble runs each text once per template
        total = len(texts) * members if isinstance(texts, Sequence) else None
        with tqdm(total=total, disable=not self.config.show_progress, unit="text") as bar:
            chunk: list[str] = []
            offset = 0
            for item in texts:
                chunk.append(item)
                if len(chunk) == chunk_size:
                    yield self._embed_chunk(check_texts_at(chunk, offset), kind, batch_size, bar)
                    offset += len(chunk)
                    chunk = []
            if chunk or offset == 0:
                yield self._embed_chunk(check_texts_at(chunk, offset), kind, batch_size, bar)

    def _embed_chunk(
        self, texts: list[str], kind: Kind, batch_size: int | None, bar: Any, raw: bool = False
    ) -> np.ndarray:
        members = [self._cached(r, texts, batch_size, bar) for r in self._routes[kind]]
        return self._finish(members, raw)

    def _finish(self, members: list[np.ndarray], raw: bool = False) -> np.ndarray:
        """Ensemble members' pooled states -> the output vectors (one place for both paths)."""
        if len(members) == 1 and self._calibration is None:
            vectors = members[0]  # a single template: the pooled state itself
        else:
            # An ensemble averages unit vectors so that no template dominates by scale.
            vectors = np.mean([_unit(m) for m in members], axis=0).astype(np.float32)
        if raw:
            return vectors
        if self._calibration is not None:
            vectors = self._calibration.apply(vectors)
        return _unit(vectors) if self.config.normalize_embeddings else vectors

    def embed_raw(self, texts: Sequence[str], *, kind: Kind = "document") -> np.ndarray:
        """Vectors before calibration and final normalisation (what a calibration is fit on)."""
        items = check_texts(texts)
        from tqdm.auto import tqdm

        with tqdm(total=len(items), disable=not self.config.show_progress, unit="text") as bar:
            chunks = [
                self._embed_chunk(items[i : i + _STREAM_CHUNK], kind, None, bar, raw=True)
                for i in range(0, len(items), _STREAM_CHUNK)
            ]
        return np.concatenate(chunks) if chunks else np.empty((0, self.hidden_size), np.float32)

    def embed_layers(
        self, texts: Sequence[str], template: str, layers: Sequence[int]
    ) -> np.ndarray:
        """Pooled states of several layers in one pass per batch: ``(n, len(layers), hidden)``.

        Used by layer search; vectors are not normalised or calibrated.
        """
        items = check_texts(texts)
        route = self._route(template, layers=list(layers))
        from tqdm.auto import tqdm

        with tqdm(total=len(items), disable=not self.config.show_progress, unit="text") as bar:
            return self._compute(route, items, None, bar)

    def _cached(
        self, route: _Route, texts: list[str], batch_size: int | None, bar: Any
    ) -> np.ndarray:
        if route.cache is None:
            return self._compute(route, texts, batch_size, bar)
        hits = route.cache.get(texts)
        missing = [i for i, hit in enumerate(hits) if hit is None]
        out = np.empty((len(texts), self.hidden_size), dtype=np.float32)
        for i, hit in enumerate(hits):
            if hit is not None:
                out[i] = hit
        bar.update(len(texts) - len(missing))
        if missing:
            fresh = self._compute(route, [texts[i] for i in missing], batch_size, bar)
            out[missing] = fresh
            route.cache.put([texts[i] for i in missing], fresh)
        return out

    def _compute(
        self, route: _Route, texts: list[str], batch_size: int | None, bar: Any
    ) -> np.ndarray:
        """Raw pooled float32 vectors for one route, in input order."""
        fwd = route.forward
        shape = (len(fwd.layers), self.hidden_size) if fwd.multi else (self.hidden_size,)
        out = np.empty((len(texts), *shape), dtype=np.float32)
        if not texts:
            return out
        with self._tokenizer_lock:
            ids, truncated = route.prompts.encode(texts)
        if truncated:
            warnings.warn(
                f"{truncated} of {len(texts)} texts were truncated to fit max_length="
                f"{self.config.max_length} tokens (the template's suffix is kept)",
                stacklevel=4,
            )
        cached = [fwd.uses_prefix(x) for x in ids]
        skip = len(fwd.prefix.ids) if fwd.prefix is not None else 0
        lengths = [len(x) - skip if c else len(x) for x, c in zip(ids, cached)]
        max_items = batch_size or self.config.batch_size
        jobs: list[tuple[bool, list[int]]] = []
        for group in (True, False):  # prefix-reusing prompts, then any that cannot
            members = [i for i, c in enumerate(cached) if c is group]
            plan = plan_batches(
                [lengths[i] for i in members], self.config.max_batch_tokens, max_items
            )
            jobs += [(group, [members[b] for b in batch]) for batch in plan]

        def run(replica: int, group: bool, index: list[int]) -> None:
            with self._locks[replica]:
                vectors = route.forwards[replica]([ids[i] for i in index], with_prefix=group)
                out[index] = vectors.cpu().numpy()  # one host copy per batch
            bar.update(len(index))

        if len(self._models) == 1:
            for group, index in jobs:
                run(0, group, index)
            return out
        # Data parallel: each replica's thread takes the next batch as soon as it is free.
        pending = iter(jobs)
        take = threading.Lock()

        def worker(replica: int) -> None:
            while True:
                with take:
                    job = next(pending, None)
                if job is None:
                    return
                run(replica, *job)

        with ThreadPoolExecutor(len(self._models)) as pool:
            for future in [pool.submit(worker, r) for r in range(len(self._models))]:
                future.result()
        return out

    # -- sparse (PromptReps) -------------------------------------------------------------
    def embed_with_sparse(
        self,
        texts: Sequence[str],
        *,
        kind: Kind = "document",
        batch_size: int | None = None,
        raw: bool = False,
    ) -> tuple[np.ndarray, scipy.sparse.csr_matrix]:
        """Dense vectors and PromptReps sparse vectors from the same forward passes.

        The dense vectors equal :meth:`embed`'s (or :meth:`embed_raw`'s with ``raw``)
        bit for bit. The sparse row of a text is ``log(1 + relu(logits))`` of the
        prompt's next token, kept for the tokens of the text's own non-stopword words
        (top 128); see :mod:`promptembed.sparse`. The LM head is applied to the last
        token's final state only, and loaded on the first call.

        Args:
            texts: The texts.
            kind: ``document`` or ``query``: which template route to use.
            batch_size: Max texts per forward pass (default from the config).
            raw: Dense vectors before calibration and normalisation.

        Returns:
            ``(n, dim)`` float32 array and an ``(n, vocab)`` float32 CSR matrix.

        Raises:
            ValueError: With ``pooling="mean"`` (the logits belong to the last token) or
                an untied LM head that cannot be found.

        Example:
            >>> dense, sparse = emb.embed_with_sparse(["Tea lowers BP."])  # doctest: +SKIP
            >>> dense.shape[0], sparse.shape[0]  # doctest: +SKIP
            (1, 1)

        """
        items = check_texts(texts)
        routes = self._sparse_routes_for(kind)
        from tqdm.auto import tqdm

        from promptembed.sparse import sparse_rows

        total = len(items) * len(routes)
        with tqdm(total=total, disable=not self.config.show_progress, unit="text") as bar:
            states = [self._compute(r, items, batch_size, bar) for r in routes]
        for route, state in zip(self._routes[kind], states):
            if route.cache is not None:  # the same vectors embed() would cache
                route.cache.put(items, state[:, 0])
        dense = self._finish([s[:, 0] for s in states], raw)
        vocab = int(self._sparse_head.shape[0])
        allowed = [ids[ids < vocab] for ids in self._word_ids(items)]
        softcap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
        final = np.stack([s[:, 1] for s in states])
        return dense, sparse_rows(final, self._sparse_head, allowed, softcap)

    def embed_sparse(
        self, texts: Sequence[str], *, kind: Kind = "document", batch_size: int | None = None
    ) -> scipy.sparse.csr_matrix:
        """The PromptReps sparse vectors alone (see :meth:`embed_with_sparse`)."""
        return self.embed_with_sparse(texts, kind=kind, batch_size=batch_size)[1]

    def _sparse_routes_for(self, kind: Kind) -> list[_Route]:
        """Routes pooling the template's layer and the final layer in one pass."""
        if kind not in self._routes:
            raise ValueError(f"kind must be one of {list(self._routes)}, got {kind!r}")
        if self.config.pooling != "last":
            raise ValueError(
                f"sparse output needs pooling='last' (the logits of the prompt's last "
                f"token), got pooling={self.config.pooling!r}"
            )
        if self._sparse_head is None:
            from promptembed.sparse import WordIds, output_head

            self._sparse_head = output_head(self.model, self._loaded.source_path)
            self._word_ids = WordIds(self.tokenizer, self._tokenizer_lock)
        if kind not in self._sparse_routes:
            specs = self.config.templates if kind == "document" else self.config.query_templates
            self._sparse_routes[kind] = [
                self._route(spec, layers=[self._layer_of(spec), -1]) for spec in specs
            ]
        return self._sparse_routes[kind]

    def _layer_of(self, spec: str) -> int:
        return self.config.layer if self.config.layer is not None else Template.parse(spec).layer


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def check_texts_at(texts: list[Any], offset: int) -> list[str]:
    """Like :func:`check_texts` for a chunk of a stream; error indexes are global."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"texts[{offset + i}] must be str, got {type(text).__name__}: {text!r:.80}"
            )
    return texts

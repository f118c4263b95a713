"""PromptEmbedder: validate → tokenise (suffix-safe) → batch → forward → pool → normalise."""

from __future__ import annotations

import copy
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
from tqdm.auto import tqdm

from promptembed._util.inputs import check_texts, check_texts_at
from promptembed._util.vectors import unit
from promptembed.config import EmbedderConfig, resolve_calibration
from promptembed.engine.batching import plan_batches
from promptembed.engine.cache import EmbeddingCache
from promptembed.engine.calibration import Calibration
from promptembed.engine.forward import LayerForward
from promptembed.engine.likelihood import (
    head_ids,
    mean_log_likelihood,
    pair_ids,
    shared_head_log_likelihood,
    tail_ids,
)
from promptembed.engine.loading import LoadedModel, load_model, replica_devices
from promptembed.engine.prompts import PromptTokenizer
from promptembed.engine.sparse import WordIds, output_head, sparse_rows
from promptembed.identity import likelihood_record, of_embedder
from promptembed.templates import AUXILIARY_TEMPLATES, RERANK_PROMPTS, Template, rerank_prompt

if TYPE_CHECKING:
    import scipy.sparse
    import torch

    from promptembed.engine.cache import EmbeddingCache
    from promptembed.engine.calibration import Calibration
    from promptembed.engine.forward import LayerForward
    from promptembed.engine.loading import LoadedModel
    from promptembed.engine.prompts import PromptTokenizer
    from promptembed.engine.sparse import WordIds

Kind = Literal["document", "query"]
_STREAM_CHUNK = 4096


class NonFiniteEmbeddingError(ValueError):
    """A vector about to leave the library holds NaN or infinity.

    Raised once, at the end of the core pipeline, so every face (Python, adapters,
    server, indexer) sees the same error. ``index`` is the text's position in the
    caller's input; ``cause`` names the stage that produced it. A ``ValueError``, so
    callers that report bad input per item (the indexer, the CLI) catch it too.

    Example:
        >>> error = NonFiniteEmbeddingError(3, "the calibration ...")
        >>> error.index, str(error)[:35]
        (3, 'the embedding of texts[3] is not fi')

    """

    def __init__(self, index: int, cause: str) -> None:
        super().__init__(f"the embedding of texts[{index}] is not finite (NaN or inf): {cause}")
        self.index = index
        self.cause = cause


class _Route:
    """One template: its tokenizer, a forward pass per model replica, and its cache."""

    def __init__(
        self,
        prompts: PromptTokenizer,
        forwards: list[LayerForward],
        cache: EmbeddingCache | None,
        aux: _Route | None = None,
    ) -> None:
        self.prompts = prompts
        self.forwards = forwards
        self.cache = cache
        self.aux = aux  # contrastive prompting's auxiliary prompt, run up to its block

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

        self._setup(config, load_model(config))

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, **fields: Any) -> PromptEmbedder:
        """Wrap an already loaded transformers base model and tokenizer.

        The model is used on its current device and dtype.

        Example:
            >>> emb = PromptEmbedder.from_model(model, tokenizer, template="eol")  # doctest: +SKIP

        """
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

        # A device_map already spreads the one model over the devices: no copies.
        replicas = 1 if config.device_map is not None else config.replicas
        devices = replica_devices(config.device, loaded.device, replicas)
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
        self._likelihood_caches: dict[int, EmbeddingCache] = {}  # by max_passage_tokens
        self._word_ids: WordIds | None = None
        self._calibration: Calibration | None = None
        if config.calibration:
            self._calibration = Calibration.load(resolve_calibration(config.calibration))
            self._calibration.check(self.config, self.hidden_size)

    def _route(self, spec: str, layers: list[int] | None = None) -> _Route:

        cfg, tok = self.config, self._loaded.tokenizer
        template = Template.parse(spec).with_demonstrations(cfg.demonstrations or [])
        placeholder = _placeholder_id(tok) if cfg.token_prepending else None
        prompts = PromptTokenizer(tok, template, cfg.max_length, cfg.normalize_text, placeholder)
        # Pads sit right of every real token, so any id the embedding table has will do;
        # some tokenizers' pad id lies outside the model's vocabulary.
        vocab = self._loaded.model.get_input_embeddings().num_embeddings
        candidates = (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id)
        pad = next((t for t in candidates if t is not None and 0 <= t < vocab), 0)
        layer = cfg.layer if cfg.layer is not None else template.layer
        chosen: int | list[int] = layers if layers is not None else layer
        prepend = None
        if cfg.token_prepending is not None:
            prepend = (*cfg.token_prepending, prompts.placeholder_index)
        forwards = [
            LayerForward(
                m, chosen, cfg.pooling, pad_id=pad, prepend=prepend, contrast=cfg.contrastive
            )
            for m in self._models
        ]
        self._cache_prefix(forwards, prompts)
        aux = None
        if cfg.contrastive is not None:
            aux_prompts = PromptTokenizer(
                tok, AUXILIARY_TEMPLATES[template.normalizer], cfg.max_length, cfg.normalize_text
            )
            block = cfg.contrastive[0]
            aux_forwards = [LayerForward(m, block + 1, pad_id=pad) for m in self._models]
            self._cache_prefix(aux_forwards, aux_prompts)
            aux = _Route(aux_prompts, aux_forwards, None)
        forward = forwards[0]
        cache = None
        if cfg.embedding_cache and layers is None:
            if self._loaded.fingerprint == "in-memory":
                raise ValueError(
                    "embedding_cache needs a model loaded by name or path, "
                    "not one passed in memory (its weights have no fingerprint)"
                )

            # The embedder's identity, exact precision included, and this route's template.
            identity = of_embedder(self).record()
            route = {
                "template": template.text,
                "layer": forward.layer,
                "normalize": prompts.normalize,
            }
            cache = EmbeddingCache(cfg.embedding_cache, {**identity, "route": route})
        return _Route(prompts, forwards, cache, aux)

    def _cache_prefix(self, forwards: list[LayerForward], prompts: PromptTokenizer) -> None:
        if self.config.prefix_cache and prompts.prefix_ids:
            for forward, lock in zip(forwards, self._locks):
                with lock:
                    forward.set_prefix(prompts.prefix_ids)

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

    @property
    def torch_dtype(self) -> torch.dtype:
        """The dtype the model computes in (decided once, in loading)."""
        return self._loaded.dtype

    @property
    def precision(self) -> str:
        """What the model computes in: ``int8``, ``float32``, ``bfloat16`` or ``float16``."""
        return self._loaded.precision

    def __repr__(self) -> str:
        cfg = self.config
        template = cfg.template
        layers = [Template.parse(t).layer for t in cfg.templates]
        layers = [cfg.layer] if cfg.layer is not None else layers
        shown = [f"model={cfg.model!r}", f"template={template!r}"]
        if cfg.query_template is not None:
            shown.append(f"query_template={cfg.query_template!r}")
        shown.append(f"layer={layers[0] if len(layers) == 1 else layers!r}")
        if cfg.calibration:
            shown.append(f"calibration={Path(cfg.calibration).name!r}")
        shown += [f"dimension={self.dimension}", f"device={str(self.device)!r}"]
        shown.append(f"dtype={self.precision!r}")
        return f"PromptEmbedder({', '.join(shown)})"

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
        if isinstance(texts, str):
            # One text (a query): no stream, no progress bar, no output buffer to fill.
            if kind not in self._routes:
                raise ValueError(f"kind must be one of {list(self._routes)}, got {kind!r}")
            return self._embed_chunk(check_texts(texts), kind, batch_size, _NO_BAR)[0]
        items = check_texts(texts)
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        start = 0
        for chunk in self.embed_iter(items, batch_size=batch_size, kind=kind):
            out[start : start + len(chunk)] = chunk
            start += len(chunk)
        return out

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
        _check_positive(batch_size=batch_size, chunk_size=chunk_size)
        if isinstance(texts, str) or texts is None:
            texts = check_texts(texts)

        members = len(self._routes[kind])  # an ensemble runs each text once per template
        total = len(texts) * members if isinstance(texts, Sequence) else None
        with tqdm(total=total, disable=not self.config.show_progress, unit="text") as bar:
            chunk: list[str] = []
            offset = 0
            for item in texts:
                chunk.append(item)
                if len(chunk) == chunk_size:
                    items = check_texts_at(chunk, offset)
                    yield self._embed_chunk(items, kind, batch_size, bar, offset=offset)
                    offset += len(chunk)
                    chunk = []
            if chunk or offset == 0:
                items = check_texts_at(chunk, offset)
                yield self._embed_chunk(items, kind, batch_size, bar, offset=offset)

    def _embed_chunk(
        self,
        texts: list[str],
        kind: Kind,
        batch_size: int | None,
        bar: Any,
        raw: bool = False,
        offset: int = 0,
    ) -> np.ndarray:
        members = [self._cached(r, texts, batch_size, bar) for r in self._routes[kind]]
        return self._finish(members, raw, offset)

    def _finish(self, members: list[np.ndarray], raw: bool = False, offset: int = 0) -> np.ndarray:
        """Ensemble members' pooled states -> the output vectors (one place for both paths)."""
        if len(members) == 1 and self._calibration is None:
            vectors = members[0]  # a single template: the pooled state itself
        else:
            # An ensemble averages unit vectors so that no template dominates by scale.
            vectors = np.mean([unit(m) for m in members], axis=0).astype(np.float32)
        if not raw:
            if self._calibration is not None:
                vectors = self._calibration.apply(vectors)
            vectors = unit(vectors) if self.config.normalize_embeddings else vectors
        # The one finiteness check: every vector that leaves the library passes here.
        _check_finite(vectors, offset, members, None if raw else self._calibration)
        return vectors

    def embed_raw(self, texts: Sequence[str], *, kind: Kind = "document") -> np.ndarray:
        """Vectors before calibration and final normalisation (what a calibration is fit on)."""
        items = check_texts(texts)

        with tqdm(total=len(items), disable=not self.config.show_progress, unit="text") as bar:
            chunks = [
                self._embed_chunk(items[i : i + _STREAM_CHUNK], kind, None, bar, raw=True, offset=i)
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

        with tqdm(total=len(items), disable=not self.config.show_progress, unit="text") as bar:
            return self._compute(route, items, None, bar)

    def _cached(
        self, route: _Route, texts: list[str], batch_size: int | None, bar: Any
    ) -> np.ndarray:
        if route.cache is None:
            return self._compute(route, texts, batch_size, bar)
        hits = route.cache.get(texts, (self.hidden_size,))
        missing = [i for i, hit in enumerate(hits) if hit is None]
        out = np.empty((len(texts), self.hidden_size), dtype=np.float32)
        for i, hit in enumerate(hits):
            if hit is not None:
                out[i] = hit
        bar.update(len(texts) - len(missing))
        # Stored slice by slice: a long pass that is killed keeps what it computed.
        truncated: list[int] = []
        for start in range(0, len(missing), _CACHE_SLICE):
            part = missing[start : start + _CACHE_SLICE]
            fresh = self._compute(route, [texts[i] for i in part], batch_size, bar, truncated)
            out[part] = fresh
            route.cache.put([texts[i] for i in part], fresh)
        self._warn_truncated(sum(truncated), len(missing))  # once for the whole call
        return out

    def _warn_truncated(self, truncated: int, total: int) -> None:
        if truncated:
            warnings.warn(
                f"{truncated} of {total} texts were truncated to fit max_length="
                f"{self.config.max_length} tokens (the template's suffix is kept)",
                stacklevel=_caller_stacklevel(),
            )

    def _compute(
        self,
        route: _Route,
        texts: list[str],
        batch_size: int | None,
        bar: Any,
        truncations: list[int] | None = None,
    ) -> np.ndarray:
        """Raw pooled float32 vectors for one route, in input order.

        Truncated texts are warned about here, or counted into ``truncations`` for a
        caller that warns once for several calls.
        """
        fwd = route.forward
        shape = (len(fwd.layers), self.hidden_size) if fwd.multi else (self.hidden_size,)
        out = np.empty((len(texts), *shape), dtype=np.float32)
        if not texts:
            return out
        with self._tokenizer_lock:
            ids, truncated = route.prompts.encode(texts)
            aux_ids = route.aux.prompts.encode(texts)[0] if route.aux else None
        if truncations is not None:
            truncations.append(truncated)
        else:
            self._warn_truncated(truncated, len(texts))
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
                subtract = _auxiliary(route, replica, aux_ids, index)
                vectors = route.forwards[replica](
                    [ids[i] for i in index], with_prefix=group, subtract=subtract
                )
                out[index] = vectors.cpu().numpy()  # one host copy per batch
            bar.update(len(index))

        if len(self._models) == 1 or len(jobs) == 1:  # nothing to share between replicas
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
        if self._sparse_head is None:  # reranking may have loaded it already
            self._sparse_head = output_head(self.model, self._loaded.source_path)
        if self._word_ids is None:
            self._word_ids = WordIds(self.tokenizer, self._tokenizer_lock)
        if kind not in self._sparse_routes:
            specs = self.config.templates if kind == "document" else self.config.query_templates
            self._sparse_routes[kind] = [
                self._route(spec, layers=[self._layer_of(spec), -1]) for spec in specs
            ]
        return self._sparse_routes[kind]

    # -- query likelihood (reranking) ---------------------------------------------------
    def query_likelihood(
        self,
        query: str,
        passages: Sequence[str],
        *,
        prompt: str = "auto",
        max_passage_tokens: int = 128,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """How well each passage predicts ``query``: its tokens' mean log-probability.

        The score of UPR-style reranking (see :mod:`promptembed.engine.likelihood`),
        from this embedder's own model: higher is better, and scores of one query's
        passages are comparable with each other.

        Args:
            query: The query.
            passages: The candidate passages.
            prompt: ``auto`` (``zh`` for a query with Han characters, else ``en``),
                ``en``, ``zh``, or a prompt of your own with a ``{passage}`` field; the
                query follows it.
            max_passage_tokens: Each passage is cut to this many tokens first.
            batch_size: Pairs per forward pass (default from the config).

        Returns:
            ``(len(passages),)`` float64 array of mean log-probabilities (<= 0).

        Example:
            >>> passages = ["Tea lowers BP.", "Bees dance."]
            >>> emb.query_likelihood("Does tea lower BP?", passages)  # doctest: +SKIP
            array([-2.1, -6.8])

        """
        query, text = self._likelihood_query(query, prompt)
        items = check_texts(passages) if len(passages) else []
        _check_positive(max_passage_tokens=max_passage_tokens, batch_size=batch_size)
        if not items:
            return np.zeros(0)
        with self._tokenizer_lock:
            sequences, tail = pair_ids(self.tokenizer, text, query, items, max_passage_tokens)
        softcap, pad = self._likelihood_head()
        size = batch_size or self.config.batch_size
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        scores = np.empty(len(sequences))
        for start in range(0, len(order), size):
            picked = order[start : start + size]
            with self._locks[0]:
                scores[picked] = mean_log_likelihood(
                    self.model,
                    self._sparse_head,
                    [sequences[i] for i in picked],
                    tail,
                    pad,
                    softcap,
                )
        return scores

    def pair_likelihoods(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        prompt: str = "auto",
        max_passage_tokens: int = 128,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """:meth:`query_likelihood` of many ``(query, passage)`` pairs, each passage run once.

        For batch reranking (an evaluation, a job over many queries), where one passage
        is a candidate of several queries: the pairs are grouped by passage (and
        prompt); a passage of several queries runs its prompt through the model once,
        and its queries are scored in batches against the cached keys and values. The
        other pairs run whole, batched together. Scores equal :meth:`query_likelihood`'s
        pair by pair (tested), rounded to float32.

        With the config's ``embedding_cache`` set, scores are kept there as they are
        computed (keyed by the weights, the prompt, the passage cut and the pair, not
        by the embedding templates): a rerun, a run after a kill, or another config of
        the same model scores only the pairs it has not seen.

        Args:
            pairs: ``(query, passage)`` pairs.
            prompt: As for :meth:`query_likelihood` (``auto`` picks per query).
            max_passage_tokens: Each passage is cut to this many tokens first.
            batch_size: Queries per forward pass against one passage.

        Returns:
            ``(len(pairs),)`` float64 array of mean log-probabilities (<= 0).

        Example:
            >>> emb.pair_likelihoods([("Does tea lower BP?", "Tea lowers BP.")])  # doctest: +SKIP
            array([-2.1])

        """
        _check_positive(max_passage_tokens=max_passage_tokens, batch_size=batch_size)
        checked = [self._likelihood_query(q, prompt) for q, _ in pairs]
        passages = check_texts([p for _, p in pairs]) if len(pairs) else []
        cache = self._likelihood_cache(max_passage_tokens)
        scores = np.full(len(pairs), np.nan)
        keys: list[str] = []  # each pair's cache entry: its prompt, query and passage
        if cache is not None and pairs:
            keys = [f"{text}\0{q}\0{passage}" for (q, text), passage in zip(checked, passages)]
            for i, hit in enumerate(cache.get(keys, (1,))):
                scores[i] = np.nan if hit is None else hit[0]
        todo = [i for i in range(len(pairs)) if np.isnan(scores[i])]
        left, done = len(todo), []
        with tqdm(total=len(pairs), disable=not self.config.show_progress, unit="pair",
                  desc="likelihood", initial=len(pairs) - left) as bar:  # fmt: skip
            for picked, values in self._scored_pairs(
                checked, passages, todo, max_passage_tokens, batch_size
            ):
                scores[picked] = values
                bar.update(len(picked))
                left, done = left - len(picked), done + picked
                if cache is not None and (len(done) >= _CACHE_SLICE or not left):
                    # Stored as it goes: a long rerank that is killed keeps what it scored.
                    cache.put([keys[i] for i in done], scores[done, None])
                    done = []
        # Through float32, as the cache keeps them: a score is the same, cached or fresh.
        return scores.astype(np.float32).astype(np.float64)

    def _scored_pairs(
        self,
        checked: list[tuple[str, str]],
        passages: list[str],
        todo: list[int],
        max_passage_tokens: int,
        batch_size: int | None,
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Score the pairs ``todo``: ``(pair indices, scores)`` one forward pass at a time."""
        groups: dict[tuple[str, str], list[int]] = {}
        for i in todo:
            groups.setdefault((checked[i][1], passages[i]), []).append(i)
        softcap, pad = self._likelihood_head()
        size = batch_size or self.config.batch_size
        singles: list[tuple[int, list[int], int]] = []  # (pair, ids, query length)
        for (text, passage), members in groups.items():
            with self._tokenizer_lock:
                (prefix,) = head_ids(self.tokenizer, text, [passage], max_passage_tokens)
                tails = [tail_ids(self.tokenizer, text, checked[i][0]) for i in members]
            if len(members) == 1:  # nothing to share: batched with other such pairs
                singles.append((members[0], prefix + tails[0], len(tails[0])))
                continue
            for start in range(0, len(members), size):
                with self._locks[0]:
                    values = shared_head_log_likelihood(
                        self.model, self._sparse_head, prefix, tails[start : start + size],
                        pad, softcap,
                    )  # fmt: skip
                yield members[start : start + size], values
        singles.sort(key=lambda single: len(single[1]))
        for start in range(0, len(singles), size):
            batch = singles[start : start + size]
            with self._locks[0]:
                values = mean_log_likelihood(
                    self.model, self._sparse_head, [ids for _, ids, _ in batch],
                    [t for _, _, t in batch], pad, softcap,
                )  # fmt: skip
            yield [i for i, _, _ in batch], values

    def _likelihood_cache(self, max_passage_tokens: int) -> EmbeddingCache | None:
        """The score cache of :meth:`pair_likelihoods`, beside the vectors (with the config's).

        An in-memory model never gets here with a cache: loading refuses that pair.
        """
        if not self.config.embedding_cache:
            return None
        if max_passage_tokens not in self._likelihood_caches:
            self._likelihood_caches[max_passage_tokens] = EmbeddingCache(
                self.config.embedding_cache, likelihood_record(self, max_passage_tokens)
            )
        return self._likelihood_caches[max_passage_tokens]

    def _likelihood_query(self, query: str, prompt: str) -> tuple[str, str]:
        """The checked query and its prompt (with ``{passage}``), or a clear refusal."""
        (query,) = check_texts([query])
        if not query.strip():
            raise ValueError(f"query {query!r} is blank: there is nothing to score")
        text = rerank_prompt(prompt, query)
        if "{passage}" not in text:
            raise ValueError(
                f"prompt must be one of {['auto', *RERANK_PROMPTS]} or contain {{passage}}, "
                f"got {prompt!r}"
            )
        return query, text

    def _likelihood_head(self) -> tuple[float | None, int]:
        """The LM head (loaded once), the model's logit soft-cap and the pad id."""
        if self._sparse_head is None:
            self._sparse_head = output_head(self.model, self._loaded.source_path)
        softcap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
        return softcap, self._routes["document"][0].forward.pad_id

    def _layer_of(self, spec: str) -> int:
        return self.config.layer if self.config.layer is not None else Template.parse(spec).layer


def _check_positive(**values: int | None) -> None:
    """Refuse a size of 0 or below (``None`` means the config's default)."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an int >= 1 or None, got {value!r}")
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 (or None for the config's default), got {value}")


_CACHE_SLICE = 512  # texts computed between two writes to the embedding cache
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # promptembed/, not engine/


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside promptembed: the user's call site."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        level, frame = level + 1, frame.f_back
    return level


class _NoBar:
    """The progress bar of a one-text call: counts nothing."""

    def update(self, _n: int = 1) -> None:
        return None


_NO_BAR = _NoBar()


def _auxiliary(
    route: _Route, replica: int, aux_ids: list[list[int]] | None, index: list[int]
) -> torch.Tensor | None:
    """Contrastive prompting: the auxiliary prompts' values for one batch (None: off)."""
    if route.aux is None or aux_ids is None:
        return None
    block = route.forwards[replica].contrast[0]
    return route.aux.forwards[replica].values([aux_ids[i] for i in index], block)


def _placeholder_id(tokenizer: Any) -> int:
    """The Token Prepending placeholder: the token of a lone space, else EOS/BOS.

    Its own embedding only reaches the blocks before ``token_prepending``'s start
    (from there on its state is overwritten), so a neutral existing token serves
    where the reference code adds a new, randomly initialised one.
    """
    space = tokenizer(" ", add_special_tokens=False)["input_ids"]
    if len(space) == 1:
        return int(space[0])
    fallback = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else None
    return int(fallback if fallback is not None else tokenizer.bos_token_id or 0)


def _check_finite(
    vectors: np.ndarray, offset: int, members: list[np.ndarray], calibration: Calibration | None
) -> None:
    """Refuse NaN or inf on its way out, naming the first bad text and the likely cause."""
    if np.isfinite(vectors).all():
        return
    row = int(np.flatnonzero(~np.isfinite(vectors).reshape(len(vectors), -1).all(axis=1))[0])
    if any(not np.isfinite(m[row]).all() for m in members):
        cause = (
            "the model produced it: corrupt weights, or an overflow in float16/bfloat16 "
            "(try dtype='float32')"
        )
    elif calibration is not None:
        cause = (
            "the calibration turned a finite vector into NaN/inf: its file holds non-finite "
            "values; refit it with `promptembed calibrate`"
        )
    else:
        cause = (
            "the pooled vector was finite but overflowed on normalisation (values near "
            "float32's limit: corrupt weights, or a tampered embedding_cache entry)"
        )
    raise NonFiniteEmbeddingError(offset + row, cause)

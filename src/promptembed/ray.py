"""Bulk embedding on Ray: an actor pool of models writing into a Chroma server.

Requires the ``ray`` extra (``pip install 'promptembed[ray]'``).

* :func:`embed_dataset` adds an ``embedding`` column to a Ray Dataset of texts.
* :func:`write_dataset` embeds a dataset of ``id``/``text`` rows and upserts them into
  the config's Chroma collection, skipping ids already stored.
* :func:`index_paths` is ``promptembed index`` on Ray: the same run as
  :func:`promptembed.ingest.pipeline.index_paths` (:func:`~promptembed.ingest.pipeline.run_index`:
  same chunks and ids, same skipping of stored chunks, same removal of stale chunks per
  source once its new ones are stored, same pruning), with the embedding and writing
  done by the actor pool.

Each actor of the pool holds one :class:`~promptembed.PromptEmbedder`: one per GPU
slot when the cluster has GPUs (``num_gpus_per_worker``), else one per
``num_cpus_per_worker`` CPUs. Workers write straight to the Chroma *server* named by
the store config (``host``/``port``); an embedded ``path`` store cannot be shared
between processes. Every actor runs the collection-compatibility check of
:mod:`promptembed.store.guard` before its first write, so vectors of two embedders never
share a collection.

Ray itself: ``ray.init()`` is called when Ray is not initialised yet, with
``RayConfig.address`` (or ``$RAY_ADDRESS``; else a local Ray), and shut down again
by :func:`index_paths` when it started it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptembed._util.optional import require
from promptembed.config import Config, EmbedderConfig, RayConfig, load_config

require("ray", "ray")
require("ray.data", "ray")

import numpy as np
import ray
import ray.data

from promptembed.engine.embedder import PromptEmbedder
from promptembed.ingest.pipeline import IndexRun, Progress, run_index
from promptembed.ingest.planning import Chunk, IndexStats, resolve_root
from promptembed.store.collections import open_existing_collection
from promptembed.store.function import open_checked_collection

if TYPE_CHECKING:
    from promptembed.engine.embedder import Kind, PromptEmbedder

__all__ = ["RayIndexStats", "WriteStats", "embed_dataset", "index_paths", "write_dataset"]

log = logging.getLogger(__name__)


@dataclass
class WriteStats:
    """What :func:`write_dataset` did.

    Example:
        >>> write_dataset(ds, "promptembed.toml")  # doctest: +SKIP
        WriteStats(rows=14, embedded=14, skipped=0, workers=2)

    """

    rows: int = 0
    embedded: int = 0
    skipped: int = 0
    workers: int = 0  # distinct actors that took batches


@dataclass
class RayIndexStats(IndexStats):
    """What :func:`index_paths` did: :class:`~promptembed.ingest.planning.IndexStats`, ``workers``.

    Example:
        >>> index_paths(["corpus"], "promptembed.toml").workers  # doctest: +SKIP
        2

    """

    workers: int = 0  # distinct actors that embedded batches (0: nothing to embed)


# -- Ray and the actor pool --------------------------------------------------------------


@contextmanager
def _ray_session(address: str | None) -> Iterator[None]:
    """Use the running Ray, else ``ray.init(address)`` and shut it down afterwards."""
    if ray.is_initialized():
        yield
        return
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _pool(
    options: RayConfig, embedder: EmbedderConfig, max_workers: int | None = None
) -> dict[str, Any]:
    """``map_batches`` arguments for the actor pool: its size and each actor's resources."""
    if not ray.is_initialized():  # what Ray Data would do, but with the configured address
        ray.init(address=options.address, ignore_reinit_error=True, log_to_driver=False)
    resources = ray.cluster_resources()
    total_gpus = float(resources.get("GPU", 0))
    gpus = options.num_gpus_per_worker
    if gpus is None:
        gpus = 1.0 if total_gpus >= 1 and embedder.device != "cpu" else 0.0
    if gpus > 0:
        if total_gpus <= 0:
            raise ValueError(
                f"ray.num_gpus_per_worker is {gpus}, but the Ray cluster has no GPUs; "
                "set it to 0 for CPU actors"
            )
        workers = options.num_workers or max(1, int(total_gpus // gpus))
        slot: dict[str, Any] = {"num_gpus": gpus, "num_cpus": options.num_cpus_per_worker}
    else:
        cpus = options.num_cpus_per_worker
        workers = options.num_workers or max(1, int(float(resources.get("CPU", 1)) // cpus))
        slot = {"num_cpus": cpus}
    if max_workers is not None:
        workers = max(1, min(workers, max_workers))
    log.info("Ray actor pool: %d workers, %s each", workers, slot)
    return {"compute": ray.data.ActorPoolStrategy(size=workers), **slot}


def _on_this_actor(config: EmbedderConfig) -> EmbedderConfig:
    """The config with ``cuda:N`` made ``cuda``: Ray shows an actor only its own GPUs."""
    if ray.get_gpu_ids() and config.device.startswith("cuda:"):
        return config.model_copy(update={"device": "cuda"})  # not an identity field
    return config


class _Embed:
    """Actor: one embedder; adds the vectors of ``text_column`` as ``output_column``."""

    def __init__(
        self, config: EmbedderConfig, text_column: str, output_column: str, kind: Kind
    ) -> None:

        self.embedder = PromptEmbedder(config=_on_this_actor(config))
        self.text_column, self.output_column, self.kind = text_column, output_column, kind

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.text_column].tolist()]
        return {**batch, self.output_column: self.embedder.embed(texts, kind=self.kind)}


class _EmbedAndWrite:
    """Actor: one embedder and one checked collection; embeds and upserts each batch."""

    def __init__(
        self,
        config: Config,
        id_column: str,
        text_column: str,
        metadata_columns: Sequence[str],
        skip_existing: bool,
    ) -> None:

        embedder: PromptEmbedder = PromptEmbedder(config=_on_this_actor(config.embedder))

        # The guard's check, with this actor's own loaded model.
        client, self.collection, self.embedder = open_checked_collection(config, embedder)
        self.max_upsert = max(1, int(client.get_max_batch_size()))
        self.id_column, self.text_column = id_column, text_column
        self.metadata_columns, self.skip_existing = list(metadata_columns), skip_existing

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Embed and upsert the batch's rows not stored yet; report the counts."""
        ids = [str(i) for i in batch[self.id_column].tolist()]
        keep = self._missing(ids)
        if keep:
            self._write(batch, ids, keep)
        return {
            "embedded": np.array([len(keep)], dtype=np.int64),
            "skipped": np.array([len(ids) - len(keep)], dtype=np.int64),
            "worker": np.array([ray.get_runtime_context().get_actor_id() or ""]),
        }

    def _missing(self, ids: list[str]) -> list[int]:
        """Positions of the rows to write: all, or those whose id is not stored."""
        keep = list(range(len(ids)))
        if self.skip_existing and ids:
            stored = set(self.collection.get(ids=ids, include=[])["ids"])
            keep = [i for i in keep if ids[i] not in stored]
        return keep

    def _write(self, batch: dict[str, np.ndarray], ids: list[str], keep: list[int]) -> None:
        """Embed the rows at ``keep`` in one call and upsert them in server-sized slices."""
        texts = batch[self.text_column].tolist()
        columns = {c: batch[c].tolist() for c in self.metadata_columns}
        docs = [str(texts[i]) for i in keep]
        metadatas = [  # a None (e.g. no page) is left out: Chroma stores no nulls
            {c: v for c in columns if (v := _scalar(columns[c][i])) is not None} for i in keep
        ]
        vectors = self.embedder.embed(docs, kind="document")
        for start in range(0, len(keep), self.max_upsert):  # the server's batch limit
            end = start + self.max_upsert
            self.collection.upsert(
                ids=[ids[i] for i in keep[start:end]],
                embeddings=vectors[start:end],
                documents=docs[start:end],
                metadatas=metadatas[start:end] if self.metadata_columns else None,
            )


def _scalar(value: Any) -> str | int | float | bool | None:
    """A Chroma metadata value (numpy scalars become Python ones)."""
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


# -- public API --------------------------------------------------------------------------


def embed_dataset(
    ds: ray.data.Dataset,
    config: str | Path | dict[str, Any] | Config,
    *,
    text_column: str = "text",
    output_column: str = "embedding",
    kind: Kind = "document",
) -> ray.data.Dataset:
    """Add the embedding of every row's text as a column, on an actor pool (lazy).

    Args:
        ds: A Ray Dataset with a ``text_column`` of strings.
        config: A :class:`Config`, TOML path or dict; its ``[embedder]`` and ``[ray]``
            tables are used.
        text_column: Column holding the texts.
        output_column: Column that receives the ``(dim,)`` float32 vectors.
        kind: ``document`` or ``query``: which template route to use.

    Returns:
        The lazily transformed dataset; Ray must be initialised when it executes.

    Example:
        >>> ds = ray.data.from_items([{"text": "A man is playing a guitar."}])  # doctest: +SKIP
        >>> embed_dataset(ds, "promptembed.toml").take(1)[0]["embedding"].shape  # doctest: +SKIP
        (640,)

    """
    cfg = load_config(config)
    opts = cfg.ray
    return ds.map_batches(
        _Embed,
        fn_constructor_kwargs={
            "config": cfg.embedder,
            "text_column": text_column,
            "output_column": output_column,
            "kind": kind,
        },
        batch_size=opts.batch_size,
        batch_format="numpy",
        **_pool(opts, cfg.embedder),
    )


def _server_config(config: str | Path | dict[str, Any] | Config) -> Config:
    cfg = load_config(config)
    if cfg.store is None or cfg.store.mode != "http":
        raise ValueError(
            "Ray workers write to a Chroma server: the config's store table needs `host` "
            "and `port` (start one with `chroma run --path DIR`), not a local `path`"
        )
    return cfg


def write_dataset(
    ds: ray.data.Dataset,
    config: str | Path | dict[str, Any] | Config,
    *,
    id_column: str = "id",
    text_column: str = "text",
    metadata_columns: Sequence[str] | None = None,
    skip_existing: bool = True,
    total: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_workers: int | None = None,
) -> WriteStats:
    """Embed a dataset on an actor pool and upsert it into the config's Chroma server.

    Each batch is one embed call and one ``upsert`` by id, so a batch written twice
    (a retried task, a rerun) leaves one copy. Rows whose id is already stored are
    skipped without being embedded: ids should identify their content, as chunk ids
    do (``skip_existing=False`` re-embeds and overwrites them).

    Args:
        ds: A Ray Dataset with ``id_column`` and ``text_column``.
        config: A :class:`Config`, TOML path or dict with a ``[store]`` naming a Chroma
            server (``host``/``port``); its ``[ray]`` table sizes the pool.
        id_column: Column of unique ids.
        text_column: Column of texts (stored as the documents).
        metadata_columns: Columns stored as metadata (default: all other columns).
        skip_existing: Skip rows whose id the collection already holds.
        total: Row count for ``progress`` (default: counted, which executes ``ds``).
        progress: Called as ``progress(done, total)`` with rows written or skipped.
        max_workers: At most this many actors (e.g. the number of blocks: an actor
            without a block to take would load its model for nothing).

    Returns:
        :class:`WriteStats` of the run.

    Raises:
        ValueError: If the store is not a Chroma server.
        promptembed.store.guard.EmbedderConflictError: If the collection holds another
            embedder's vectors (raised by the actors before any write).

    Example:
        >>> ds = ray.data.from_items([{"id": "a", "text": "Bees dance."}])  # doctest: +SKIP
        >>> write_dataset(ds, "promptembed.toml")  # doctest: +SKIP
        WriteStats(rows=1, embedded=1, skipped=0, workers=1)

    """
    cfg = _server_config(config)
    if metadata_columns is None:
        metadata_columns = [c for c in ds.schema().names if c not in (id_column, text_column)]
    columns = {"id_column": id_column, "text_column": text_column}
    out = _writing(ds, cfg, columns, list(metadata_columns), skip_existing, max_workers)
    if progress is not None and total is None:
        total = ds.count()
    return _collect(out, total, progress)


def _writing(
    ds: ray.data.Dataset,
    cfg: Config,
    columns: dict[str, str],
    metadata_columns: list[str],
    skip_existing: bool,
    max_workers: int | None,
) -> ray.data.Dataset:
    """``ds`` mapped through the pool of :class:`_EmbedAndWrite` actors (lazy)."""
    return ds.map_batches(
        _EmbedAndWrite,
        fn_constructor_kwargs={
            "config": Config(embedder=cfg.embedder, store=cfg.store),  # no server secrets
            **columns,
            "metadata_columns": metadata_columns,
            "skip_existing": skip_existing,
        },
        batch_size=cfg.ray.batch_size,
        batch_format="numpy",
        **_pool(cfg.ray, cfg.embedder, max_workers),
    )


def _collect(out: ray.data.Dataset, total: int | None, progress: Progress | None) -> WriteStats:
    """Run the write (``out`` is lazy) and sum the counts its batches report."""
    stats = WriteStats()
    workers: set[str] = set()
    if progress is not None:
        progress(0, total or 0)
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        stats.embedded += int(batch["embedded"].sum())
        stats.skipped += int(batch["skipped"].sum())
        stats.rows = stats.embedded + stats.skipped
        workers.update(str(w) for w in batch["worker"])
        stats.workers = len(workers)
        if progress is not None:
            progress(stats.rows, total or stats.rows)
    return stats


@dataclass
class _RayWriter:
    """:class:`~promptembed.ingest.pipeline.ChunkWriter` sending the missing chunks to the pool.

    The driver never loads the model: the actors do, and create the collection if needed.
    """

    cfg: Config
    workers: int = 0  # distinct actors that wrote

    @property
    def embedder(self) -> EmbedderConfig:
        """The config's embedder (checked against the collection on the driver)."""
        return self.cfg.embedder

    @property
    def dimension(self) -> int | None:
        """Unknown on the driver: the stored one is taken when the identity agrees."""
        return None

    def load(self) -> None:
        """Nothing: each actor loads its own model."""

    def prepare(self, run: IndexRun) -> None:
        """Nothing: each actor loads its model and opens the checked collection itself."""

    def write(self, run: IndexRun, progress: Progress | None) -> None:
        """Embed and upsert ``run.todo`` on the pool; then every chunk is stored."""
        todo = [c for chunks in run.todo.values() for c in chunks]
        written = self._write_rows(todo, progress)
        self.workers = written.workers
        assert self.cfg.store is not None
        run.collection = open_existing_collection(self.cfg.store, self.cfg.embedder)
        assert run.collection is not None  # the actors created it
        run.stored(todo)
        # What the actors embedded: a retried batch finds its ids stored and skips them.
        run.stats.embedded = written.embedded

    def _write_rows(self, todo: list[Chunk], progress: Progress | None) -> WriteStats:
        """:func:`write_dataset` over the chunks, one block per batch."""
        # Uniform rows: `page` on every row (None, dropped at upsert, when a file has none).
        rows = [{"id": c.id, "text": c.text, "page": c.page, **c.metadata} for c in todo]
        blocks = -(-len(rows) // self.cfg.ray.batch_size)  # one block per batch: all actors work
        with _ray_session(self.cfg.ray.address):
            return write_dataset(
                ray.data.from_items(rows, override_num_blocks=blocks),
                self.cfg,
                metadata_columns=sorted({k for r in rows for k in r} - {"id", "text"}),
                skip_existing=True,
                total=len(rows),
                progress=progress,
                max_workers=blocks,
            )


def index_paths(
    paths: Sequence[str | Path],
    config: str | Path | dict[str, Any] | Config,
    *,
    progress: Callable[[int, int], None] | None = None,
    prune: bool = False,
    root: str | Path | None = None,
    namespace: str | None = None,
) -> RayIndexStats:
    """``promptembed index`` on Ray: same chunks, ids and guarantees, embedded by a pool.

    The driver reads and chunks the files (exactly as
    :func:`promptembed.ingest.pipeline.index_paths`, through the same
    :func:`~promptembed.ingest.pipeline.run_index`), lists the chunk ids already stored
    and sends only the missing chunks to the actor pool, which embeds and upserts them
    in batches. Once a source's new chunks are stored, its stale chunks are deleted, so
    a run killed at any point and restarted ends with exactly the corpus. The driver
    never loads the model.

    Args:
        paths: Files and directories (the in-process readers: ``.md``, ``.markdown``,
            ``.txt``, ``.pdf``, ``.html``, ``.htm``; other files are reported as skipped).
        config: A :class:`Config`, TOML path or dict with a Chroma server ``[store]``
            (``host``/``port``) and optionally a ``[ray]`` table.
        progress: Called as ``progress(done, total)`` with chunks embedded so far.
        prune: Also delete the chunks of files deleted from the given directories
            (after everything else is stored), as in the in-process indexer.
        root: Source keys are paths relative to it (as in the in-process indexer).
        namespace: Key sources as ``<namespace>:<path inside the argument>`` instead.

    Returns:
        :class:`RayIndexStats`: the fields of :class:`~promptembed.ingest.planning.IndexStats`
        (``embedded == 0`` for an unchanged corpus) and the number of actors that wrote.

    Raises:
        ValueError: If the store is not a Chroma server.
        promptembed.store.guard.EmbedderConflictError: If the collection holds another
            embedder's vectors (nothing is written).

    Example:
        >>> index_paths(["examples/corpus"], "promptembed.toml")  # doctest: +SKIP
        IndexStats(files=10, chunks=14, embedded=14, ...)

    """
    cfg = _server_config(config)
    writer = _RayWriter(cfg)
    stats = run_index(
        paths,
        cfg,
        writer,
        RayIndexStats(),
        root=resolve_root(config, root),
        progress=progress,
        prune=prune,
        namespace=namespace,
    )
    stats.workers = writer.workers
    counts = (stats.files, stats.chunks, stats.embedded, stats.deleted)
    log.info("ray: %d files, %d chunks, %d embedded, %d removed", *counts)
    return stats

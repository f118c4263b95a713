"""`promptembed index`, `query` and `demo`: the main job over Chroma."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from promptembed.cli.base import (
    ConfigOpt,
    DeviceOpt,
    DTypeOpt,
    LayerOpt,
    ModelOpt,
    QueryTemplateOpt,
    TemplateOpt,
    app,
    build_config,
    console,
    err,
    fail,
    quiet,
)
from promptembed.config import Config, RayConfig, StoreConfig, load_config
from promptembed.ingest.planning import SUFFIXES
from promptembed.registry import shared_embedder
from promptembed.retrieval import retrieve
from promptembed.store.collections import StoreBusyError
from promptembed.store.guard import EmbedderConflictError
from promptembed.store.reading import query


def _store_config(
    config: Path | None, store: Path | None, collection: str | None, **embedder: Any
) -> Config:
    """The config file plus CLI overrides; the store must end up set."""
    cfg = build_config(config, **embedder)
    if store is not None or collection is not None:
        fields = cfg.store.model_dump() if cfg.store is not None else {}
        if store is not None:
            fields.update(path=str(store), host=None)
        if collection is not None:
            fields["collection"] = collection
        cfg = cfg.model_copy(update={"store": StoreConfig.model_validate(fields)})
    if cfg.store is None:
        raise ValueError(
            "no store configured: pass --config with a [store] table (path or host/port) "
            "or --store DIR"
        )
    return cfg


StoreOpt = Annotated[Path | None, typer.Option(help="Chroma directory (overrides the config).")]

CollectionOpt = Annotated[str | None, typer.Option(help="Collection name (overrides the config).")]


def _run_index(
    paths: list[Path],
    cfg: Config,
    embedder: Any = None,
    on_ray: bool = False,
    prune: bool = False,
    root: Path | None = None,
    namespace: str | None = None,
) -> Any:
    """Index in this process or on Ray, behind a transient progress bar on stderr."""
    # Both bind a heavy optional package at import (chromadb, Ray): loaded only here, so
    # the rest of the CLI runs without those extras, and a missing one is named.
    if on_ray:
        from promptembed import ray as on_ray_module

        on_ray_module.ray.data.DataContext.get_current().enable_progress_bars = False  # ours
    else:
        from promptembed.ingest.pipeline import index_paths

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet(),
    ) as bar:
        task = bar.add_task("reading and chunking files", total=None)

        def on_stage(description: str) -> None:
            bar.update(task, description=description, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, description="embedding chunks", completed=done, total=total)

        if on_ray:
            return on_ray_module.index_paths(
                paths, cfg, progress=progress, root=root, namespace=namespace
            )
        return index_paths(
            paths,
            cfg,
            embedder=embedder,
            progress=progress,
            prune=prune,
            root=root,
            namespace=namespace,
            on_stage=on_stage,
        )


def _print_summary(stats: Any, collection: str, prune: bool, verbose: bool) -> None:
    """Counts per outcome, then every skipped or failed file (every file with -v)."""
    shown = stats.outcomes if verbose else stats.problems
    if shown:
        table = Table("file", "outcome", "chunks", "detail", title="files", title_justify="left")
        style = {"failed": "red", "skipped": "yellow", "indexed": "green", "unchanged": ""}
        for o in shown:
            table.add_row(
                escape(o.source),
                f"[{style[o.status]}]{o.status}[/]" if style[o.status] else o.status,
                str(o.chunks),
                escape(o.detail),
            )
        console.print(table)
    counts = ", ".join(
        f"{stats.count(s)} {s}" for s in ("indexed", "unchanged", "skipped", "failed")
    )
    console.print(
        f"{stats.files} files into {collection!r}: {counts}; {stats.chunks} chunks, "
        f"{stats.embedded} embedded, {stats.deleted} stale removed"
        + (f", {stats.migrated} chunks re-keyed" if stats.migrated else "")
        + (f", {stats.pruned} chunks of deleted files pruned" if prune else ""),
        soft_wrap=True,  # one line, greppable
    )


def _print_hits(text: str, hits: list[Any]) -> None:
    """The query, then one line per hit: rank, score, source#chunk and a snippet."""
    console.print(f"[bold]query:[/] {escape(text)}")
    if not hits:
        console.print("  (no results)")
    for hit in hits:
        snippet = " ".join(hit.text.split())
        snippet = snippet if len(snippet) <= 100 else snippet[:97] + "..."
        # A PDF's hit names its page (1-based), the unit a reader finds; others their chunk.
        where = f"p.{hit.page}" if hit.page is not None else f"#{hit.chunk}"
        console.print(
            f"  {hit.rank}. {hit.score:.4f}  [cyan]{escape(hit.source)} {where}[/]  "
            f"{escape(snippet)}",
            soft_wrap=True,
        )


RevisionOpt = Annotated[
    str | None, typer.Option(help="Hub revision (branch, tag, commit) of the model.")
]

DeviceMapOpt = Annotated[
    str | None, typer.Option(help="transformers device_map (e.g. auto) for large models.")
]

ServerOpt = Annotated[
    str | None,
    typer.Option(
        help="Embed through a running `promptembed serve` at this URL (client mode, "
        "overrides [embedder] server); API key from $PROMPTEMBED_API_KEY."
    ),
]

NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        help="Key sources as NAMESPACE:<path inside the argument> instead of by their path "
        "relative to the config's folder."
    ),
]


PathsArg = Annotated[
    list[Path], typer.Argument(help=f"Files or directories ({', '.join(SUFFIXES)}).")
]

StrictOpt = Annotated[bool, typer.Option(help="Exit with 1 if any file was skipped or failed.")]

UseRayOpt = Annotated[bool, typer.Option("--ray", help="Embed on Ray actors into a Chroma server.")]

RayAddressOpt = Annotated[
    str | None, typer.Option(help="Ray cluster (ray://head:10001, auto); implies --ray.")
]

RayWorkersOpt = Annotated[
    int | None, typer.Option(min=1, help="Ray actors (model copies); implies --ray.")
]

PruneOpt = Annotated[
    bool,
    typer.Option(help="Also remove the chunks of files deleted from the given directories."),
]


def _with_ray(
    cfg: Config, use_ray: bool, address: str | None, workers: int | None
) -> tuple[Config, bool]:
    """The config with ``--ray-address``/``--ray-workers`` applied, and whether Ray runs it.

    Either option implies ``--ray``.
    """
    if not (use_ray or address is not None or workers is not None):
        return cfg, False
    if cfg.embedder.server:
        raise ValueError(
            "--ray loads the model on each Ray actor; it cannot embed through "
            f"[embedder] server = {cfg.embedder.server!r}: drop one of them"
        )
    given = {"address": address, "num_workers": workers}
    fields = {**cfg.ray.model_dump(), **{k: v for k, v in given.items() if v is not None}}
    return cfg.model_copy(update={"ray": RayConfig.model_validate(fields)}), True


def _report(stats: Any, cfg: Config, prune: bool, strict: bool) -> None:
    """Print the run's summary (every file with -v); with ``strict``, exit 1 on problems."""
    assert cfg.store is not None
    verbose = logging.getLogger().isEnabledFor(logging.INFO)
    _print_summary(stats, cfg.store.collection, prune, verbose)
    if strict and stats.problems:
        err.print(f"--strict: {len(stats.problems)} files were skipped or failed")
        raise typer.Exit(code=1)


@app.command("index")
def index_cmd(
    paths: PathsArg,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    collection: CollectionOpt = None,
    model: ModelOpt = None,
    template: TemplateOpt = None,
    query_template: QueryTemplateOpt = None,
    layer: LayerOpt = None,
    device: DeviceOpt = None,
    dtype: DTypeOpt = None,
    revision: RevisionOpt = None,
    device_map: DeviceMapOpt = None,
    server: ServerOpt = None,
    namespace: NamespaceOpt = None,
    strict: StrictOpt = False,
    use_ray: UseRayOpt = False,
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
    prune: PruneOpt = False,
) -> None:
    """Chunk files and upsert them into Chroma (unchanged chunks are not re-embedded).

    Every file is reported as indexed, unchanged, skipped (with the reason) or failed
    (with the error); the run carries on past a bad file. An embedded store is locked
    while the run writes.
    """
    try:
        cfg = _store_config(
            config,
            store,
            collection,
            model=model,
            template=template,
            query_template=query_template,
            layer=layer,
            device=device,
            dtype=dtype,
            revision=revision,
            device_map=device_map,
            server=server,
        )
        cfg, on_ray = _with_ray(cfg, use_ray, ray_address, ray_workers)
        if on_ray and prune:
            raise ValueError("--prune runs without --ray: index on Ray, then run it locally")
        root = config.resolve().parent if config is not None else None
        stats = _run_index(paths, cfg, on_ray=on_ray, prune=prune, root=root, namespace=namespace)
    except (EmbedderConflictError, StoreBusyError, ValueError, ImportError, OSError) as error:
        raise fail(error) from error
    _report(stats, cfg, prune, strict)


@app.command("query")
def query_cmd(
    text: Annotated[str, typer.Argument(help="The query.")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="How many chunks.")] = 5,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    collection: CollectionOpt = None,
    model: ModelOpt = None,
    template: TemplateOpt = None,
    query_template: QueryTemplateOpt = None,
    layer: LayerOpt = None,
    device: DeviceOpt = None,
    dtype: DTypeOpt = None,
    revision: RevisionOpt = None,
    device_map: DeviceMapOpt = None,
    server: ServerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per hit.")] = False,
) -> None:
    """Print the chunks nearest to a query, with cosine scores and sources.

    Never creates a collection: a missing one is an error (exit 2).
    """
    try:
        cfg = _store_config(
            config,
            store,
            collection,
            model=model,
            template=template,
            query_template=query_template,
            layer=layer,
            device=device,
            dtype=dtype,
            revision=revision,
            device_map=device_map,
            server=server,
        )
        # Hybrid or reranked: the configured channels, fused and reranked in the core.
        staged = cfg.retrieval.mode == "hybrid" or cfg.retrieval.rerank is not None
        hits = retrieve(cfg, text, k) if staged else query(text, cfg, k=k)
    except (EmbedderConflictError, StoreBusyError, ValueError, ImportError, OSError) as error:
        raise fail(error) from error
    if as_json:
        for hit in hits:
            typer.echo(json.dumps(hit.__dict__, ensure_ascii=False))
    else:
        _print_hits(text, hits)


DEMO_QUERIES = (
    "How do bees tell each other where flowers are?",
    "What should I check before a sourdough bread goes in the oven?",
    "如何在家里种番茄？",
)


def _default_corpus() -> Path:
    here = Path(__file__).resolve().parents[3] / "examples" / "corpus"
    return here if here.is_dir() else Path("examples/corpus")


@app.command("demo")
def demo_cmd(
    corpus: Annotated[
        Path | None, typer.Option(help="Folder to index (default: examples/corpus).")
    ] = None,
    store: Annotated[
        Path | None, typer.Option(help="Chroma directory to keep (default: a temporary one).")
    ] = None,
    model: Annotated[str, typer.Option(help="Alias, hub id, directory or .gguf.")] = "gemma-3-270m",
    # cot documents with `query` queries: Gemma-3-270M's best single-template retrieval
    # setting measured on SciFact train (README, booster table), and the demo's clearest.
    template: Annotated[str, typer.Option(help="Document template name or custom.")] = "cot",
    query_template: Annotated[str, typer.Option(help="Query template name or custom.")] = "query",
    device: DeviceOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, help="Hits per query.")] = 3,
    queries: Annotated[
        list[str] | None, typer.Option("--query", help="Queries (repeatable).")
    ] = None,
) -> None:
    """Index the example corpus offline and run a few queries (English and Chinese)."""
    corpus = corpus or _default_corpus()
    with tempfile.TemporaryDirectory(prefix="promptembed-demo-") as tmp:
        try:
            cfg = load_config(
                {
                    "embedder": {
                        "model": model,
                        "template": template,
                        "query_template": query_template,
                        **({"device": device} if device else {}),
                    },
                    "store": {"path": str(store or Path(tmp)), "collection": "demo"},
                }
            )

            start = time.perf_counter()
            embedder = shared_embedder(cfg.embedder)
            err.print(
                f"model {model} (template {template}, queries {query_template}, "
                f"dim {embedder.dimension}) loaded in "
                f"{time.perf_counter() - start:.1f}s; indexing {corpus}"
            )
            stats = _run_index([corpus], cfg, embedder, root=corpus.resolve().parent)
            console.print(
                f"indexed {stats.files} files: {stats.chunks} chunks, {stats.embedded} embedded"
            )
            for text in queries or DEMO_QUERIES:
                _print_hits(text, query(text, cfg, k=k, embedder=embedder))
        except (ValueError, ImportError, OSError) as error:
            raise fail(error) from error

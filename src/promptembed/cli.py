"""The ``promptembed`` command line (typer)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from promptembed.config import Config, EmbedderConfig, load_config

app = typer.Typer(
    help="Sentence embeddings from generative LLMs through prompts.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
eval_app = typer.Typer(help="Evaluate an embedder.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
console = Console()
err = Console(stderr=True, soft_wrap=True)

# Options shared by every command that builds an embedder. Each overrides the
# config file's [embedder] table when given.
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
ModelOpt = Annotated[str | None, typer.Option(help="Alias, hub id, directory or .gguf.")]
TemplateOpt = Annotated[str | None, typer.Option(help="eol, sth, sum, cot, ke, none or custom.")]
QueryTemplateOpt = Annotated[str | None, typer.Option(help="Template for queries.")]
LayerOpt = Annotated[int | None, typer.Option(help="Pooled layer (-1 last, -2 ...).")]
PoolingOpt = Annotated[str | None, typer.Option(help="last or mean.")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu, mps, cuda[:N].")]
DTypeOpt = Annotated[str | None, typer.Option(help="auto, float32, bfloat16, float16.")]
MaxLenOpt = Annotated[int | None, typer.Option(help="Max tokens per prompt.")]
BatchOpt = Annotated[int | None, typer.Option(help="Max texts per forward pass.")]


def build_config(config: Path | None, **overrides: Any) -> Config:
    """Merge a config file (or defaults) with the CLI's explicit options."""
    base = load_config(config) if config is not None else Config()
    given = {k: v for k, v in overrides.items() if v is not None}
    embedder = EmbedderConfig.model_validate({**base.embedder.model_dump(), **given})
    return base.model_copy(update={"embedder": embedder})


def _fail(error: BaseException) -> typer.Exit:
    """Print a one-line error (a config error per field) and return exit code 2."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        message = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})"
            for e in error.errors(include_url=False)
        )
    else:
        message = str(error)
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code=2)


@eval_app.command("sts")
def eval_sts(
    data: Annotated[list[Path], typer.Option(help="STS CSV (s1,s2,score); repeatable.")],
    config: ConfigOpt = None,
    model: ModelOpt = None,
    template: TemplateOpt = None,
    layer: LayerOpt = None,
    pooling: PoolingOpt = None,
    device: DeviceOpt = None,
    dtype: DTypeOpt = None,
    max_length: MaxLenOpt = None,
    batch_size: BatchOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
) -> None:
    """Spearman ×100 of cosine similarity against gold scores, per file."""
    from promptembed.embedder import PromptEmbedder
    from promptembed.evaluate import evaluate_sts

    try:
        cfg = build_config(
            config,
            model=model,
            template=template,
            layer=layer,
            pooling=pooling,
            device=device,
            dtype=dtype,
            max_length=max_length,
            batch_size=batch_size,
            show_progress=not as_json,
        )
        embedder = PromptEmbedder(config=cfg.embedder)
        results = [evaluate_sts(embedder, path, name=path.name) for path in data]
    except (ValueError, ImportError, OSError) as error:
        raise _fail(error) from error
    e = cfg.embedder
    if as_json:
        for r in results:
            typer.echo(
                json.dumps(
                    {
                        **r.to_dict(),
                        "model": e.model,
                        "template": e.template,
                        "layer": e.layer,
                        "pooling": e.pooling,
                    }
                )
            )
        return
    table = Table(title=f"STS — {e.model}, template={e.template}, pooling={e.pooling}")
    for col in ("data", "spearman", "pairs", "sentences", "seconds"):
        table.add_column(col, justify="left" if col == "data" else "right")
    for r in results:
        table.add_row(r.data, f"{r.spearman:.2f}", str(r.pairs), str(r.sentences), f"{r.seconds}")
    console.print(table)


@eval_app.command("retrieval")
def eval_retrieval(
    corpus: Annotated[Path, typer.Option(help="BEIR corpus.jsonl.")],
    queries: Annotated[Path, typer.Option(help="BEIR queries.jsonl.")],
    qrels: Annotated[Path, typer.Option(help="BEIR qrels TSV.")],
    config: ConfigOpt = None,
    model: ModelOpt = None,
    template: TemplateOpt = None,
    query_template: QueryTemplateOpt = None,
    layer: LayerOpt = None,
    pooling: PoolingOpt = None,
    device: DeviceOpt = None,
    dtype: DTypeOpt = None,
    max_length: MaxLenOpt = None,
    batch_size: BatchOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """nDCG@10 and Recall@100 on a BEIR-format dataset."""
    from promptembed.embedder import PromptEmbedder
    from promptembed.evaluate import evaluate_retrieval

    try:
        cfg = build_config(
            config,
            model=model,
            template=template,
            query_template=query_template,
            layer=layer,
            pooling=pooling,
            device=device,
            dtype=dtype,
            max_length=max_length,
            batch_size=batch_size,
            show_progress=not as_json,
        )
        result = evaluate_retrieval(PromptEmbedder(config=cfg.embedder), corpus, queries, qrels)
    except (ValueError, ImportError, OSError) as error:
        raise _fail(error) from error
    e = cfg.embedder
    payload = {
        **result.to_dict(),
        "model": e.model,
        "template": e.template,
        "query_template": e.query_template or e.template,
    }
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        console.print(payload)


def _store_config(
    config: Path | None, store: Path | None, collection: str | None, **embedder: Any
) -> Config:
    """The config file plus CLI overrides; the store must end up set."""
    cfg = build_config(config, **embedder)
    if store is not None or collection is not None:
        from promptembed.config import StoreConfig

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


def _run_index(paths: list[Path], cfg: Config, embedder: Any = None, on_ray: bool = False) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    if on_ray:
        from promptembed import ray as on_ray_module  # names the extra when Ray is missing

        on_ray_module.ray.data.DataContext.get_current().enable_progress_bars = False  # ours
    else:
        from promptembed.indexing import index_paths

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("embedding chunks", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if on_ray:
            return on_ray_module.index_paths(paths, cfg, progress=progress)
        return index_paths(paths, cfg, embedder=embedder, progress=progress)


def _print_hits(text: str, hits: list[Any]) -> None:
    from rich.markup import escape

    console.print(f"[bold]query:[/] {escape(text)}")
    if not hits:
        console.print("  (no results)")
    for hit in hits:
        snippet = " ".join(hit.text.split())
        snippet = snippet if len(snippet) <= 100 else snippet[:97] + "..."
        console.print(
            f"  {hit.rank}. {hit.score:.4f}  [cyan]{escape(hit.source)}#{hit.chunk}[/]  "
            f"{escape(snippet)}",
            soft_wrap=True,
        )


@app.command("index")
def index_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories (.md, .txt).")],
    config: ConfigOpt = None,
    store: StoreOpt = None,
    collection: CollectionOpt = None,
    model: ModelOpt = None,
    template: TemplateOpt = None,
    device: DeviceOpt = None,
    use_ray: Annotated[
        bool, typer.Option("--ray", help="Embed on Ray actors into a Chroma server.")
    ] = False,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster (ray://head:10001, auto); implies --ray.")
    ] = None,
    ray_workers: Annotated[
        int | None, typer.Option(min=1, help="Ray actors (model copies); implies --ray.")
    ] = None,
) -> None:
    """Chunk files and upsert them into Chroma (unchanged chunks are not re-embedded)."""
    from promptembed.store import EmbedderConflictError

    try:
        cfg = _store_config(
            config, store, collection, model=model, template=template, device=device
        )
        on_ray = use_ray or ray_address is not None or ray_workers is not None
        if on_ray:
            from promptembed.config import RayConfig

            given = {"address": ray_address, "num_workers": ray_workers}
            fields = {**cfg.ray.model_dump(), **{k: v for k, v in given.items() if v is not None}}
            cfg = cfg.model_copy(update={"ray": RayConfig.model_validate(fields)})
        stats = _run_index(paths, cfg, on_ray=on_ray)
    except (EmbedderConflictError, ValueError, ImportError, OSError) as error:
        raise _fail(error) from error
    console.print(
        f"indexed {stats.files} files into {cfg.store.collection!r}: {stats.chunks} chunks, "
        f"{stats.embedded} embedded, {stats.deleted} stale removed, "
        f"{stats.unchanged_files} files unchanged"
    )


@app.command("query")
def query_cmd(
    text: Annotated[str, typer.Argument(help="The query.")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="How many chunks.")] = 5,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    collection: CollectionOpt = None,
    model: ModelOpt = None,
    template: TemplateOpt = None,
    device: DeviceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per hit.")] = False,
) -> None:
    """Print the chunks nearest to a query, with cosine scores and sources."""
    from promptembed.indexing import query
    from promptembed.store import EmbedderConflictError

    try:
        cfg = _store_config(
            config, store, collection, model=model, template=template, device=device
        )
        hits = query(text, cfg, k=k)
    except (EmbedderConflictError, ValueError, ImportError, OSError) as error:
        raise _fail(error) from error
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
    here = Path(__file__).resolve().parents[2] / "examples" / "corpus"
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
    template: Annotated[str, typer.Option(help="Template name or custom.")] = "ke",
    device: DeviceOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, help="Hits per query.")] = 3,
    queries: Annotated[
        list[str] | None, typer.Option("--query", "-q", help="Queries (repeatable).")
    ] = None,
) -> None:
    """Index the example corpus offline and run a few queries (English and Chinese)."""
    import tempfile
    import time

    from promptembed.indexing import query

    corpus = corpus or _default_corpus()
    with tempfile.TemporaryDirectory(prefix="promptembed-demo-") as tmp:
        try:
            cfg = load_config(
                {
                    "embedder": {
                        "model": model,
                        "template": template,
                        **({"device": device} if device else {}),
                    },
                    "store": {"path": str(store or Path(tmp)), "collection": "demo"},
                }
            )
            from promptembed.store import shared_embedder

            start = time.perf_counter()
            embedder = shared_embedder(cfg.embedder)
            err.print(
                f"model {model} (template {template}, dim {embedder.dimension}) loaded in "
                f"{time.perf_counter() - start:.1f}s; indexing {corpus}"
            )
            stats = _run_index([corpus], cfg, embedder)
            console.print(
                f"indexed {stats.files} files: {stats.chunks} chunks, {stats.embedded} embedded"
            )
            for text in queries or DEMO_QUERIES:
                _print_hits(text, query(text, cfg, k=k, embedder=embedder))
        except (ValueError, ImportError, OSError) as error:
            raise _fail(error) from error


@app.command("serve")
def serve_cmd(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8080).")] = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Serve the OpenAI embeddings API (POST /v1/embeddings) with dynamic batching."""
    try:
        from promptembed.config import ServerConfig
        from promptembed.server import run

        cfg = build_config(config, model=model, device=device)
        given = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
        server = ServerConfig.model_validate({**cfg.server.model_dump(), **given})
        cfg = cfg.model_copy(update={"server": server})
        cfg.server.resolved_api_key()
    except (ValueError, ImportError, OSError) as error:
        raise _fail(error) from error
    run(cfg)


def _write_embedder_fields(config: Path, **fields: Any) -> None:
    """Set ``[embedder]`` fields in a TOML config file, keeping its comments (tomlkit)."""
    import tomlkit

    doc = tomlkit.parse(config.read_text(encoding="utf-8"))
    table = doc.setdefault("embedder", tomlkit.table())
    for key, value in fields.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    load_config(tomlkit.loads(tomlkit.dumps(doc)).unwrap())  # refuse to write a bad config
    config.write_text(tomlkit.dumps(doc), encoding="utf-8")


@app.command("calibrate")
def calibrate_cmd(
    samples: Annotated[
        list[Path], typer.Argument(help="Unlabeled text: .txt/.md lines, STS .csv, or BEIR .jsonl.")
    ],
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config to update.")],
    method: Annotated[str, typer.Option(help="center or whiten.")] = "center",
    dims: Annotated[int | None, typer.Option(help="Keep the top-k directions.")] = None,
    limit: Annotated[int, typer.Option(help="Max sample texts (seeded subset).")] = 4000,
) -> None:
    """Fit mean-centering or whitening on a sample of your own text; write it into the config.

    The file ``calibration-<hash>.npz`` is saved next to the config, which then
    references it; every adapter, the CLI and Chroma apply it to documents and queries.
    """
    from promptembed.calibration import Calibration, fit_fields
    from promptembed.embedder import PromptEmbedder
    from promptembed.evaluate import read_texts

    try:
        cfg = load_config(config)
        if method not in ("center", "whiten"):
            raise ValueError(f"method must be 'center' or 'whiten', got {method!r}")
        texts = read_texts(samples, limit=limit)
        embedder_cfg = cfg.embedder.model_copy(update={"calibration": None, "show_progress": True})
        embedder = PromptEmbedder(config=embedder_cfg)
        calibration = Calibration.fit(
            embedder.embed_raw(texts), method=method, dims=dims, fitted_on=fit_fields(embedder_cfg)
        )  # type: ignore[arg-type]
        path = calibration.save(config.parent)
        _write_embedder_fields(config, calibration=path.name)
    except (ValueError, ImportError, OSError) as error:
        raise _fail(error) from error
    console.print(
        f"fitted {method} on {len(texts)} texts → {path} "
        f"(dimension {calibration.dimension}); {config} now uses it"
    )


@app.command("tune")
def tune_cmd(
    data: Annotated[Path, typer.Option(help="Labelled dev STS CSV (s1,s2,score).")],
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config to update.")],
    templates: Annotated[str, typer.Option(help="Comma-separated templates to try.")] = (
        "eol,sth,sum,cot,ke"
    ),
    sample: Annotated[
        list[Path] | None,
        typer.Option(help="Unlabeled text to try mean-centering with (disjoint from --data)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Max calibration sample texts.")] = 2000,
    max_ensemble: Annotated[int, typer.Option(help="Largest ensemble tried.")] = 3,
    write: Annotated[bool, typer.Option(help="Write the winner into the config.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ranking as JSON.")] = False,
) -> None:
    """Search template × layer (× centering × ensembles) on dev data; keep the winner."""
    from promptembed.calibration import Calibration, fit_fields
    from promptembed.embedder import PromptEmbedder
    from promptembed.evaluate import read_sts, read_texts
    from promptembed.tune import tune

    try:
        cfg = load_config(config)
        names = [t.strip() for t in templates.split(",") if t.strip()]
        base = cfg.embedder.model_copy(
            update={"calibration": None, "layer": None, "show_progress": not as_json}
        )
        embedder = PromptEmbedder(config=base)
        texts = read_texts(sample, limit=limit) if sample else None
        result = tune(
            embedder, read_sts(data), templates=names, sample=texts, max_ensemble=max_ensemble
        )
        best = result.best
        winner = list(best.templates) if len(best.templates) > 1 else best.templates[0]
        calibration_name = None
        if write:
            if best.calibrated:
                chosen = base.model_copy(update={"template": winner})
                raw = PromptEmbedder.from_model(
                    embedder.model, embedder.tokenizer, **chosen.model_dump(exclude={"model"})
                )
                calibration = Calibration.fit(
                    raw.embed_raw(texts or []), fitted_on=fit_fields(chosen)
                )
                calibration_name = calibration.save(config.parent).name
            _write_embedder_fields(
                config, template=winner, layer=None, calibration=calibration_name
            )
    except (ValueError, ImportError, OSError) as error:
        raise _fail(error) from error
    rows = result.candidates[:15]
    if as_json:
        typer.echo(json.dumps([c.__dict__ for c in result.candidates]))
    else:
        table = Table(title=f"tune on {data.name} — best first")
        for col in ("templates", "centered", "spearman"):
            table.add_column(col)
        for c in rows:
            table.add_row(
                " + ".join(c.templates), "yes" if c.calibrated else "no", f"{c.spearman:.2f}"
            )
        console.print(table)
    if write:
        err.print(f"wrote template={winner!r}, calibration={calibration_name!r} to {config}")


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)

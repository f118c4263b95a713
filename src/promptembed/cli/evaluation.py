"""`promptembed eval sts`, `promptembed eval retrieval` and `promptembed eval mteb`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from promptembed.cli.base import (
    BatchOpt,
    ConfigOpt,
    DeviceOpt,
    DTypeOpt,
    LayerOpt,
    MaxLenOpt,
    ModelOpt,
    PoolingOpt,
    QueryTemplateOpt,
    TemplateOpt,
    build_config,
    console,
    eval_app,
    fail,
    progress,
    quiet,
)
from promptembed.config import IndexConfig


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
            show_progress=progress(as_json),
        )
        from promptembed.engine.embedder import PromptEmbedder  # torch: only when it runs
        from promptembed.evaluation.sts import evaluate_sts

        embedder = PromptEmbedder(config=cfg.embedder)
        results = [evaluate_sts(embedder, path, name=path.name) for path in data]
    except (ValueError, ImportError, OSError) as error:
        raise fail(error) from error
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
                        "dtype": embedder.precision,
                    }
                )
            )
        return
    table = Table(
        title=f"STS — {e.model}, template={e.template}, pooling={e.pooling}, "
        f"dtype={embedder.precision}"
    )
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
    embedding_cache: Annotated[
        str | None,
        typer.Option(
            help="Cache directory: reuse the vectors and reranking scores of an earlier run."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Only the first N judged queries (the whole corpus is searched)."),
    ] = None,
    chunked: Annotated[
        bool,
        typer.Option(
            "--chunked",
            help=r"Store documents as \[index] cuts files (chunk_size, chunk_overlap); rank "
            "each by its best chunk.",
        ),
    ] = False,
    chunk_size: Annotated[
        int | None, typer.Option(help=r"With --chunked: \[index] chunk_size for this run.")
    ] = None,
    chunk_overlap: Annotated[
        int | None, typer.Option(help=r"With --chunked: \[index] chunk_overlap for this run.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    r"""nDCG@10 and Recall@100 on a BEIR-format dataset, fused and reranked as \[retrieval] says."""
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
            embedding_cache=embedding_cache,
            show_progress=progress(as_json),
        )
        # bm25 alone needs no model; dense, sparse and reranking do
        needs_model = bool({"dense", "sparse"} & set(cfg.retrieval.active)) or bool(
            cfg.retrieval.rerank
        )
        chunking = _chunking(cfg.index, chunked, chunk_size, chunk_overlap)
        from promptembed.engine.embedder import PromptEmbedder  # torch: only when it runs
        from promptembed.evaluation.retrieval import evaluate_retrieval

        embedder = PromptEmbedder(config=cfg.embedder) if needs_model else None
        result = evaluate_retrieval(
            embedder, corpus, queries, qrels, cfg.retrieval, limit, chunking
        )
    except (ValueError, ImportError, OSError) as error:
        raise fail(error) from error
    e = cfg.embedder
    payload = {
        **result.to_dict(),
        "model": e.model,
        "template": e.template,
        "query_template": e.query_template or e.template,
        "dtype": embedder.precision if embedder is not None else None,
        "retrieval": cfg.retrieval.model_dump(exclude={"lexical_path"}),
        "chunking": chunking.model_dump() if chunking else None,
    }
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        console.print(payload)


def _chunking(
    index: IndexConfig, chunked: bool, size: int | None, overlap: int | None
) -> IndexConfig | None:
    """The ``[index]`` table ``--chunked`` evaluates with, the options applied; else None."""
    if not chunked:
        options = (("--chunk-size", size), ("--chunk-overlap", overlap))
        given = [name for name, value in options if value is not None]
        if given:
            raise ValueError(f"{' and '.join(given)} need --chunked (got them without it)")
        return None
    update = {k: v for k, v in (("chunk_size", size), ("chunk_overlap", overlap)) if v is not None}
    return IndexConfig(**{**index.model_dump(), **update})


@eval_app.command("mteb")
def eval_mteb(
    tasks: Annotated[
        str | None,
        typer.Option(help="mteb task names, comma-separated (STSBenchmark,ATEC); from the hub."),
    ] = None,
    sts: Annotated[
        list[Path] | None, typer.Option(help="Local STS CSV (s1,s2,score) as a task; repeatable.")
    ] = None,
    beir: Annotated[
        list[Path] | None,
        typer.Option(help="Local BEIR folder (corpus.jsonl, queries, qrels/) as a task."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Folder for mteb's result files; default $MTEB_CACHE or ~/.cache/mteb."),
    ] = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    template: TemplateOpt = None,
    query_template: QueryTemplateOpt = None,
    device: DeviceOpt = None,
    dtype: DTypeOpt = None,
    max_length: MaxLenOpt = None,
    batch_size: BatchOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per score.")] = False,
) -> None:
    r"""Run mteb's own evaluator on mteb tasks or local files; templates from \[mteb.templates]."""
    try:
        # promptembed.mteb binds mteb (a heavy optional package) at import: loaded only here.
        from promptembed import mteb as on_mteb

        cfg = build_config(
            config,
            model=model,
            template=template,
            query_template=query_template,
            device=device,
            dtype=dtype,
            max_length=max_length,
            batch_size=batch_size,
            show_progress=progress(as_json),
        )
        names = [t.strip() for t in (tasks or "").split(",") if t.strip()]
        chosen = [
            *on_mteb.get_tasks(names),
            *(on_mteb.sts_task(path) for path in sts or []),
            *(on_mteb.beir_task(folder) for folder in beir or []),
        ]
        if not chosen:
            raise ValueError("name mteb tasks with --tasks, or local ones with --sts / --beir")
        on_mteb.load_tasks(chosen)  # before the model loads: offline, fail at once
        wrapper = on_mteb.MtebModel(cfg)
        rows = on_mteb.evaluate(wrapper, chosen, output=output, progress=not quiet())
    except (ValueError, ImportError, OSError) as error:
        raise fail(error) from error
    _print_mteb(rows, wrapper, as_json)


def _print_mteb(rows: list[dict[str, object]], wrapper: object, as_json: bool) -> None:
    """Print the mteb scores as JSON lines or a table, with the entries each task used."""
    meta = wrapper.mteb_model_meta  # type: ignore[attr-defined]
    if as_json:
        for row in rows:
            typer.echo(json.dumps({**row, "model": meta.name, "revision": meta.revision}))
        return
    table = Table(title=f"MTEB — {meta.name} (revision {meta.revision})")
    for col in ("task", "type", "split", "languages", "main score", "value", "entries"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for r in rows:
        table.add_row(
            str(r["task"]),
            str(r["type"]),
            str(r["split"]),
            ", ".join(r["languages"] or []),  # type: ignore[arg-type]
            str(r["main_score"]),
            f"{r['score']:.4f}",
            ", ".join(r["entries"]),  # type: ignore[arg-type]
        )
    console.print(table)

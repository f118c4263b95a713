"""`promptembed calibrate` and `promptembed tune`: the training-free boosters.

The commands parse options and print; the work is in
:mod:`promptembed.evaluation.tune_config`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from promptembed.cli.base import (
    app,
    console,
    err,
    fail,
    progress,
)

if TYPE_CHECKING:  # the work needs torch: imported when a command runs, not for --help
    from promptembed.evaluation.tuning import TuneResult


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
    try:
        from promptembed.evaluation.tune_config import calibrate_config

        calibration, path, n_texts = calibrate_config(
            config, samples, method=method, dims=dims, limit=limit
        )
    except (ValueError, ImportError, OSError) as error:
        raise fail(error) from error
    console.print(
        f"fitted {method} on {n_texts} texts → {path} "
        f"(dimension {calibration.dimension}); {config} now uses it"
    )


# The options of `tune`, declared once here so that the command reads as what it does.
_ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="TOML config to update.")]
_DataOpt = Annotated[Path | None, typer.Option(help="Labelled STS CSV (s1,s2,score) to select on.")]
_TrainOpt = Annotated[
    Path | None,
    typer.Option(
        help="Labelled train CSV instead of --data: split into a fit part (calibration "
        "sample) and a selection part (scored); see promptembed.evaluation.split_train."
    ),
]
_SelectionOpt = Annotated[int, typer.Option(help="Pairs in the selection part.")]
_DevOpt = Annotated[
    Path | None,
    typer.Option(help="Untouched dev CSV: the winner is scored on it once, after selection."),
]
_TemplatesOpt = Annotated[str, typer.Option(help="Comma-separated templates to try.")]
_SampleOpt = Annotated[
    list[Path] | None,
    typer.Option(help="Unlabeled text to fit calibrations on (disjoint from --data)."),
]
_LimitOpt = Annotated[int, typer.Option(help="Max calibration sample texts.")]
_DemonstrationsOpt = Annotated[
    Path | None,
    typer.Option(
        help="JSON list of candidate demonstrations, each tried: [sentence, word], or a "
        "list of such pairs shown together."
    ),
]
_TokenPrependingOpt = Annotated[
    str, typer.Option(help="Token Prepending block spans to try, e.g. 1-4,1-8.")
]
_ContrastiveOpt = Annotated[
    str,
    typer.Option(help="Contrastive prompting settings to try (block:alpha), e.g. 8:1,12:0.5."),
]
_MaxEnsembleOpt = Annotated[int, typer.Option(help="Largest ensemble tried.")]
_WriteOpt = Annotated[bool, typer.Option(help="Write the winner into the config.")]
_JsonOpt = Annotated[bool, typer.Option("--json", help="Print the ranking as JSON.")]
_CorpusOpt = Annotated[
    list[Path] | None,
    typer.Option(
        help="BEIR corpus.jsonl: tune the retrieval table instead of STS; repeat it to "
        "select on several collections at once."
    ),
]
_QueriesOpt = Annotated[
    list[Path] | None, typer.Option(help="BEIR queries.jsonl, one per --corpus, same order.")
]
_QrelsOpt = Annotated[
    list[Path] | None, typer.Option(help="Qrels TSV, one per --corpus, same order.")
]

# STS-only options that have a default: refused with --corpus when set to anything else.
_STS_DEFAULTS = {
    "templates": "eol,sth,sum,cot,ke",
    "selection_size": 1500,
    "limit": 2000,
    "max_ensemble": 3,
}


@app.command("tune")
def tune_cmd(
    config: _ConfigOpt,
    data: _DataOpt = None,
    train: _TrainOpt = None,
    selection_size: _SelectionOpt = 1500,
    dev: _DevOpt = None,
    templates: _TemplatesOpt = "eol,sth,sum,cot,ke",
    sample: _SampleOpt = None,
    limit: _LimitOpt = 2000,
    demonstrations: _DemonstrationsOpt = None,
    token_prepending: _TokenPrependingOpt = "",
    contrastive: _ContrastiveOpt = "",
    max_ensemble: _MaxEnsembleOpt = 3,
    write: _WriteOpt = True,
    as_json: _JsonOpt = False,
    corpus: _CorpusOpt = None,
    queries: _QueriesOpt = None,
    qrels: _QrelsOpt = None,
) -> None:
    """Search template × layer × ICL/TP/contrastive (× calibration × ensembles); keep the winner.

    With ``--train`` the selection is made on a held-out part of train and ``--dev`` is
    scored once, for the winner only, so the dev number is untouched by the search.

    With ``--corpus/--queries/--qrels`` it tunes the ``retrieval`` table instead: dense alone,
    BM25 alone, dense + BM25 weighted (dense 0.1 … 0.9) and RRF, by nDCG@10 on your
    qrels; the winner's mode, channels, fusion and weights go into the config. Given
    several collections (each option repeated, in the same order), the winner is the
    setting whose smallest gain over BM25 alone is largest, and each one's gain is shown.
    """
    sts = {
        "data": data,
        "train": train,
        "selection_size": selection_size,
        "dev": dev,
        "templates": templates,
        "sample": sample,
        "limit": limit,
        "demonstrations": demonstrations,
        "token_prepending": token_prepending,
        "contrastive": contrastive,
        "max_ensemble": max_ensemble,
    }
    if corpus or queries or qrels:
        _tune_retrieval(config, corpus, queries, qrels, _given(sts), write, as_json)
        return
    sts["templates"] = [t.strip() for t in templates.split(",") if t.strip()]
    try:
        from promptembed.evaluation.tune_config import StsTuneOptions, tune_sts_config

        options = StsTuneOptions(**sts)
        outcome = tune_sts_config(config, options, write=write, show_progress=progress(as_json))
    except (ValueError, ImportError, OSError) as error:
        raise fail(error) from error
    _show(outcome.result, outcome.summary, data or train, as_json)
    if write:
        err.print(
            f"wrote template={outcome.winner!r}, calibration={outcome.calibration!r} to {config}"
        )


def _given(sts: dict[str, Any]) -> list[str]:
    """The STS-only options given, as flags (``--data``, ...), sorted."""
    given = [
        name
        for name, value in sts.items()
        if (value != _STS_DEFAULTS[name] if name in _STS_DEFAULTS else value)
    ]
    return sorted("--" + name.replace("_", "-") for name in given)


def _show(result: TuneResult, summary: dict[str, Any], data: Path | None, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, default=str))
        typer.echo(json.dumps([c.__dict__ for c in result.candidates], default=str))
        return
    table = Table(title=f"tune on {data.name if data else ''} — best first")
    for col in ("templates", "variant", "calibration", "spearman"):
        table.add_column(col)
    for c in result.candidates[:15]:
        variant = json.dumps(c.variant, ensure_ascii=False) if c.variant else "-"
        table.add_row(" + ".join(c.templates), variant, c.calibration or "-", f"{c.spearman:.2f}")
    console.print(table)
    if "dev" in summary:
        console.print(
            f"selection {summary['selection']:.2f} on {summary['pairs']} pairs; "
            f"dev {summary['dev']:.2f} (difference {summary['difference']:+.2f})"
        )


def _tune_retrieval(
    config: Path,
    corpus: list[Path] | None,
    queries: list[Path] | None,
    qrels: list[Path] | None,
    given: list[str],
    write: bool,
    as_json: bool,
) -> None:
    """`promptembed tune --corpus/--queries/--qrels`: pick and write ``[retrieval]``."""
    try:
        if given:
            raise ValueError(f"{', '.join(given)} tune STS templates; not with --corpus")
        if not corpus or not queries or not qrels:
            raise ValueError("retrieval tuning needs all of --corpus, --queries and --qrels")
        from promptembed.evaluation.tune_config import tune_retrieval_config

        result = tune_retrieval_config(
            config, corpus, queries, qrels, write=write, show_progress=progress(as_json)
        )
    except (ValueError, ImportError, OSError) as error:
        raise fail(error) from error
    rows = [c.to_dict() for c in result.candidates]
    if as_json:
        typer.echo(json.dumps({"winner": rows[0], "ranking": rows}))
    else:
        console.print(_retrieval_table(rows))
    if write:
        err.print(f"wrote \\[retrieval] {rows[0]['label']} to {config}")


def _retrieval_table(rows: list[dict[str, Any]]) -> Table:
    """One row per setting: nDCG@10 (gain over BM25) per collection, then the means."""
    names = [s["name"] for s in rows[0]["sets"]]
    table = Table(title="tune retrieval on " + ", ".join(names) + " — best first")
    table.add_column("setting")
    for name in names:
        table.add_column(f"{name} nDCG@10 (vs BM25)")
    for col in ("min gain", "nDCG@10", "Recall@100"):
        table.add_column(col)
    for row in rows:
        cells = [f"{s['ndcg@10']:.4f} ({s['gain_over_bm25']:+.4f})" for s in row["sets"]]
        means = (f"{row['min_gain_over_bm25']:+.4f}", f"{row['ndcg@10']:.4f}")
        table.add_row(row["label"], *cells, *means, f"{row['recall@100']:.4f}")
    return table

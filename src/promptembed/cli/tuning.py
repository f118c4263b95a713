"""`promptembed calibrate` and `promptembed tune`: the training-free boosters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from promptembed.cli.base import (
    app,
    console,
    err,
    fail,
)
from promptembed.config import load_config


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
        raise fail(error) from error
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
    """Search template × layer (× centering/whitening × ensembles) on dev data; keep the winner."""
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
                method, dims = best.method
                calibration = Calibration.fit(
                    raw.embed_raw(texts or []),
                    method=method,  # type: ignore[arg-type]
                    dims=dims,
                    fitted_on=fit_fields(chosen),
                )
                calibration_name = calibration.save(config.parent).name
            _write_embedder_fields(
                config, template=winner, layer=None, calibration=calibration_name
            )
    except (ValueError, ImportError, OSError) as error:
        raise fail(error) from error
    rows = result.candidates[:15]
    if as_json:
        typer.echo(json.dumps([c.__dict__ for c in result.candidates]))
    else:
        table = Table(title=f"tune on {data.name} — best first")
        for col in ("templates", "calibration", "spearman"):
            table.add_column(col)
        for c in rows:
            table.add_row(" + ".join(c.templates), c.calibration or "-", f"{c.spearman:.2f}")
        console.print(table)
    if write:
        err.print(f"wrote template={winner!r}, calibration={calibration_name!r} to {config}")

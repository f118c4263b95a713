"""`promptembed calibrate` and `promptembed tune`: the training-free boosters."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
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
    _write_fields(config, "embedder", fields)


def _write_fields(config: Path, section: str, fields: dict[str, Any]) -> None:
    """Set (``None``: remove) fields of one table of a TOML config, keeping the rest."""
    import tomlkit

    doc = tomlkit.parse(config.read_text(encoding="utf-8"))
    table = doc.setdefault(section, tomlkit.table())
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


def _spans(text: str) -> list[tuple[int, int]]:
    """``"1-4,1-8"`` → ``[(1, 4), (1, 8)]``."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        start, sep, end = part.partition("-")
        if not sep or not start.isdigit() or not end.isdigit():
            raise ValueError(f"token-prepending spans look like 1-4,1-8; got {part!r}")
        out.append((int(start), int(end)))
    return out


def _contrastive(text: str) -> list[tuple[int, float]]:
    """``"8:1,12:0.5"`` → ``[(8, 1.0), (12, 0.5)]`` (block:alpha)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        block, _, alpha = part.partition(":")
        try:
            out.append((int(block), float(alpha)))
        except ValueError:
            raise ValueError(
                f"contrastive settings look like 8:1,12:0.5 (block:alpha); got {part!r}"
            ) from None
    return out


def _demo_groups(path: Path) -> list[list[list[str]]]:
    """Candidate demonstrations: each entry is one ``[sentence, word]`` or a list of them."""
    entries = json.loads(path.read_text(encoding="utf-8"))
    groups = []
    for entry in entries if isinstance(entries, list) else [entries]:
        group = [entry] if entry and all(isinstance(x, str) for x in entry) else entry
        if not (isinstance(group, list) and group) or not all(
            isinstance(d, list) and len(d) == 2 and all(isinstance(x, str) for x in d)
            for d in group
        ):
            raise ValueError(
                f"{path}: each candidate must be [sentence, word] or a list of them "
                f"([[sentence, word], ...]); got {json.dumps(entry, ensure_ascii=False)}"
            )
        groups.append([list(d) for d in group])
    return groups


def _variants(
    demonstrations: Path | None, spans: str, contrastive: str, held_out: set[str]
) -> list[dict[str, Any]]:
    """The plain prompt, each candidate demonstration (group), each TP span, each CP setting."""
    variants: list[dict[str, Any]] = [{}]
    if demonstrations is not None:
        groups = _demo_groups(demonstrations)
        leaked = [s for group in groups for s, _ in group if s in held_out]
        if leaked:
            raise ValueError(
                f"demonstration sentences must come from the fit part, not the selection "
                f"part; these are in it: {leaked}"
            )
        variants += [{"demonstrations": group} for group in groups]
    variants += [{"token_prepending": span} for span in _spans(spans)]
    variants += [{"contrastive": setting} for setting in _contrastive(contrastive)]
    return variants


@app.command("tune")
def tune_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config to update.")],
    data: Annotated[
        Path | None, typer.Option(help="Labelled STS CSV (s1,s2,score) to select on.")
    ] = None,
    train: Annotated[
        Path | None,
        typer.Option(
            help="Labelled train CSV instead of --data: split into a fit part (calibration "
            "sample) and a selection part (scored); see promptembed.tune.split_train."
        ),
    ] = None,
    selection_size: Annotated[int, typer.Option(help="Pairs in the selection part.")] = 1500,
    dev: Annotated[
        Path | None,
        typer.Option(help="Untouched dev CSV: the winner is scored on it once, after selection."),
    ] = None,
    templates: Annotated[str, typer.Option(help="Comma-separated templates to try.")] = (
        "eol,sth,sum,cot,ke"
    ),
    sample: Annotated[
        list[Path] | None,
        typer.Option(help="Unlabeled text to fit calibrations on (disjoint from --data)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Max calibration sample texts.")] = 2000,
    demonstrations: Annotated[
        Path | None,
        typer.Option(
            help="JSON list of candidate demonstrations, each tried: [sentence, word], or a "
            "list of such pairs shown together."
        ),
    ] = None,
    token_prepending: Annotated[
        str, typer.Option(help="Token Prepending block spans to try, e.g. 1-4,1-8.")
    ] = "",
    contrastive: Annotated[
        str,
        typer.Option(help="Contrastive prompting settings to try (block:alpha), e.g. 8:1,12:0.5."),
    ] = "",
    max_ensemble: Annotated[int, typer.Option(help="Largest ensemble tried.")] = 3,
    write: Annotated[bool, typer.Option(help="Write the winner into the config.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ranking as JSON.")] = False,
    corpus: Annotated[
        Path | None,
        typer.Option(help="BEIR corpus.jsonl: tune the retrieval table instead of STS."),
    ] = None,
    queries: Annotated[
        Path | None, typer.Option(help="BEIR queries.jsonl (with --corpus).")
    ] = None,
    qrels: Annotated[Path | None, typer.Option(help="Qrels TSV (with --corpus).")] = None,
) -> None:
    """Search template × layer × ICL/TP/contrastive (× calibration × ensembles); keep the winner.

    With ``--train`` the selection is made on a held-out part of train and ``--dev`` is
    scored once, for the winner only, so the dev number is untouched by the search.

    With ``--corpus/--queries/--qrels`` it tunes the ``retrieval`` table instead: dense alone,
    BM25 alone, dense + BM25 weighted (dense 0.1 … 0.9) and RRF, by nDCG@10 on your
    qrels; the winner's mode, channels, fusion and weights go into the config.
    """
    from promptembed.embedder import PromptEmbedder
    from promptembed.evaluate import evaluate_sts, read_sts
    from promptembed.tune import tune

    if corpus or queries or qrels:
        sts_only = {
            "--data": data,
            "--train": train,
            "--dev": dev,
            "--sample": sample,
            "--demonstrations": demonstrations,
            "--token-prepending": token_prepending,
            "--contrastive": contrastive,
            # Options with defaults: refused when set to anything else.
            "--templates": templates != "eol,sth,sum,cot,ke",
            "--selection-size": selection_size != 1500,
            "--limit": limit != 2000,
            "--max-ensemble": max_ensemble != 3,
        }
        _tune_retrieval(config, corpus, queries, qrels, sts_only, write, as_json)
        return
    try:
        cfg = load_config(config)
        pairs, texts = _selection(data, train, selection_size, sample, limit)
        held_out = {s for a, b, _ in pairs for s in (a, b)}
        names = [t.strip() for t in templates.split(",") if t.strip()]
        variants = _variants(demonstrations, token_prepending, contrastive, held_out)
        base = cfg.embedder.model_copy(
            update={
                "calibration": None,
                "layer": None,
                "demonstrations": None,
                "token_prepending": None,
                "contrastive": None,
                "show_progress": not as_json,
            }
        )
        embedder = PromptEmbedder(config=base)
        result = tune(
            embedder,
            pairs,
            templates=names,
            sample=texts,
            max_ensemble=max_ensemble,
            variants=variants,
        )
        best = result.best
        winner = list(best.templates) if len(best.templates) > 1 else best.templates[0]
        # Validated (not model_copy): the variant's lists become the fields' tuples.
        chosen = type(base).model_validate(
            {**base.model_dump(), "template": winner, **best.variant}
        )
        # Without --write a calibration still has to exist to score the winner on dev.
        folder = config.parent if write else Path(tempfile.mkdtemp(prefix="promptembed-"))
        calibration_name = _fit_winner(embedder, chosen, best, texts, folder)
        if write:
            _write_embedder_fields(
                config,
                template=winner,
                layer=None,
                calibration=calibration_name if write else None,
                demonstrations=best.variant.get("demonstrations"),
                token_prepending=_listed(best.variant.get("token_prepending")),
                contrastive=_listed(best.variant.get("contrastive")),
            )
        summary = {"winner": best.__dict__, "selection": best.spearman, "pairs": len(pairs)}
        if dev is not None:
            path = str(folder / calibration_name) if calibration_name else None
            final = type(chosen).model_validate({**chosen.model_dump(), "calibration": path})
            scored = PromptEmbedder(config=final)  # exactly what `eval sts --config` loads
            summary["dev"] = round(evaluate_sts(scored, read_sts(dev)).spearman, 2)
            summary["difference"] = round(summary["dev"] - best.spearman, 2)
    except (ValueError, ImportError, OSError) as error:
        raise fail(error) from error
    _show(result, summary, data or train, as_json)
    if write:
        err.print(f"wrote template={winner!r}, calibration={calibration_name!r} to {config}")


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _selection(
    data: Path | None, train: Path | None, size: int, sample: list[Path] | None, limit: int
) -> tuple[list[tuple[str, str, float]], list[str] | None]:
    """The pairs to select on and the calibration sample (from the fit part with --train)."""
    from promptembed.evaluate import read_sts, read_texts
    from promptembed.tune import split_train

    if (data is None) == (train is None):
        raise ValueError("tune needs exactly one of --data or --train")
    if data is not None:
        return read_sts(data), read_texts(sample, limit=limit) if sample else None
    fit, pairs = split_train(read_sts(train), selection=size)
    if sample:
        return pairs, read_texts(sample, limit=limit)
    fit_texts = sorted({s for a, b, _ in fit for s in (a, b)})
    rng = np.random.default_rng(0)
    picked = rng.permutation(len(fit_texts))[:limit]
    return pairs, [fit_texts[i] for i in sorted(picked.tolist())]


def _fit_winner(
    embedder: Any, chosen: Any, best: Any, texts: list[str] | None, folder: Path
) -> str | None:
    """Fit the winner's calibration (when it has one) and save it into ``folder``."""
    from promptembed.calibration import Calibration, fit_fields
    from promptembed.embedder import PromptEmbedder

    if not best.calibrated:
        return None
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
    return calibration.save(folder).name


def _show(result: Any, summary: dict[str, Any], data: Path | None, as_json: bool) -> None:
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
    corpus: Path | None,
    queries: Path | None,
    qrels: Path | None,
    sts_only: dict[str, Any],
    write: bool,
    as_json: bool,
) -> None:
    """`promptembed tune --corpus/--queries/--qrels`: pick and write ``[retrieval]``."""
    from promptembed.tune import tune_retrieval

    try:
        given = sorted(name for name, value in sts_only.items() if value)
        if given:
            raise ValueError(f"{', '.join(given)} tune STS templates; not with --corpus")
        if corpus is None or queries is None or qrels is None:
            raise ValueError("retrieval tuning needs all of --corpus, --queries and --qrels")
        cfg = load_config(config)
        embedder_cfg = cfg.embedder.model_copy(update={"show_progress": not as_json})
        result = tune_retrieval(
            cfg.model_copy(update={"embedder": embedder_cfg}), corpus, queries, qrels
        )
        if write:
            _write_fields(config, "retrieval", _retrieval_fields(result.best.retrieval))
    except (ValueError, ImportError, OSError) as error:
        raise fail(error) from error
    rows = [c.to_dict() for c in result.candidates]
    if as_json:
        typer.echo(json.dumps({"winner": rows[0], "ranking": rows}))
    else:
        table = Table(title=f"tune retrieval on {qrels.name} — best first")
        for col in ("setting", "nDCG@10", "Recall@100"):
            table.add_column(col)
        for row in rows:
            table.add_row(row["label"], f"{row['ndcg@10']:.4f}", f"{row['recall@100']:.4f}")
        console.print(table)
    if write:
        err.print(f"wrote \\[retrieval] {rows[0]['label']} to {config}")


def _retrieval_fields(r: Any) -> dict[str, Any]:
    """The ``[retrieval]`` keys a tuned setting sets; ``None`` removes a key."""
    if r.mode == "dense":  # channels, fusion and weights only apply in hybrid mode
        return {"mode": "dense", "channels": None, "fusion": None, "weights": None}
    return {
        "mode": r.mode,
        "channels": list(r.channels),
        "fusion": r.fusion,
        "weights": _inline(r.weights) if r.weights else None,
        "rrf_k": r.rrf_k if r.fusion == "rrf" else None,
    }


def _inline(values: dict[str, float]) -> Any:
    """``weights = { dense = 0.3, bm25 = 0.7 }`` rather than a ``[retrieval.weights]`` table."""
    import tomlkit

    table = tomlkit.inline_table()
    table.update(values)
    return table

"""Tune a config file: read the candidates and the data, search, write the winner.

What ``promptembed calibrate`` and ``promptembed tune`` do, below the command line:
:func:`calibrate_config` fits a calibration into a config, :func:`tune_sts_config`
picks its template, layer, booster and calibration on labelled STS pairs (the search
itself is :func:`promptembed.evaluation.tuning.tune`), and :func:`tune_retrieval_config`
picks its ``[retrieval]`` table on qrels. Every candidate is validated as a config
before a model loads, and a config is only written once it validates.

Example:
    >>> options = StsTuneOptions(data=Path("dev.csv"))
    >>> outcome = tune_sts_config(Path("pe.toml"), options)  # doctest: +SKIP
    >>> outcome.winner, outcome.calibration  # doctest: +SKIP
    ('ke@-2', 'calibration-1f2e3d4c.npz')
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomlkit

from promptembed.config import EmbedderConfig, load_config
from promptembed.engine.calibration import Calibration, fit_fields
from promptembed.engine.embedder import PromptEmbedder
from promptembed.evaluation.data import read_sts, read_texts
from promptembed.evaluation.sts import evaluate_sts
from promptembed.evaluation.tuning import (
    Candidate,
    Pair,
    RetrievalTuneResult,
    TuneResult,
    split_train,
    tune,
    tune_retrieval,
)

# The fields a tuned candidate sets itself; the config's own values are not its base.
_TUNED_FIELDS = ("calibration", "layer", "demonstrations", "token_prepending", "contrastive")


# -- writing a config file -------------------------------------------------------------------


def write_fields(config: Path, section: str, fields: Mapping[str, Any]) -> None:
    """Set (``None``: remove) fields of one table of a TOML config, keeping the rest.

    Comments and layout survive (tomlkit). The edited document is validated first, so
    a bad value leaves the file as it was.

    Raises:
        ValueError: If the edited config does not validate.
    """
    doc = tomlkit.parse(config.read_text(encoding="utf-8"))
    table = doc.setdefault(section, tomlkit.table())
    for key, value in fields.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    load_config(tomlkit.loads(tomlkit.dumps(doc)).unwrap())  # refuse to write a bad config
    config.write_text(tomlkit.dumps(doc), encoding="utf-8")


def calibrate_config(
    config: Path, samples: Sequence[Path], *, method: str, dims: int | None, limit: int
) -> tuple[Calibration, Path, int]:
    """Fit a calibration on sample texts, save it next to ``config`` and reference it there.

    Returns:
        The calibration, the file it was saved to, and the number of texts it was fit on.

    Raises:
        ValueError: If ``method`` is neither ``center`` nor ``whiten``, or the config is bad.
    """
    cfg = load_config(config)
    if method not in ("center", "whiten"):
        raise ValueError(f"method must be 'center' or 'whiten', got {method!r}")
    texts = read_texts(list(samples), limit=limit)
    embedder_cfg = cfg.embedder.model_copy(update={"calibration": None, "show_progress": True})
    embedder = PromptEmbedder(config=embedder_cfg)
    calibration = Calibration.fit(
        embedder.embed_raw(texts), method=method, dims=dims, fitted_on=fit_fields(embedder_cfg)
    )  # type: ignore[arg-type]
    path = calibration.save(config.parent)
    write_fields(config, "embedder", {"calibration": path.name})
    return calibration, path, len(texts)


# -- the candidates: booster variants ---------------------------------------------------------


def parse_spans(text: str) -> list[tuple[int, int]]:
    """Token Prepending spans: ``"1-4,1-8"`` → ``[(1, 4), (1, 8)]``.

    Example:
        >>> parse_spans("1-4, 1-8")
        [(1, 4), (1, 8)]

    """
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        start, sep, end = part.partition("-")
        if not sep or not start.isdigit() or not end.isdigit():
            raise ValueError(f"token-prepending spans look like 1-4,1-8; got {part!r}")
        out.append((int(start), int(end)))
    return out


def parse_contrastive(text: str) -> list[tuple[int, float]]:
    """Contrastive settings (block:alpha): ``"8:1,12:0.5"`` → ``[(8, 1.0), (12, 0.5)]``.

    Example:
        >>> parse_contrastive("8:1,12:0.5")
        [(8, 1.0), (12, 0.5)]

    """
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


def read_demonstrations(path: Path) -> list[list[list[str]]]:
    """Candidate demonstrations: each JSON entry is one ``[sentence, word]`` or a list of them.

    Raises:
        ValueError: If an entry has another shape.
    """
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


def booster_variants(
    base: EmbedderConfig,
    demonstrations: Path | None,
    spans: str,
    contrastive: str,
    held_out: set[str],
) -> list[dict[str, Any]]:
    """The plain prompt, each candidate demonstration (group), each TP span, each CP setting.

    Each variant is validated as ``base`` with it applied, so a bad value (an alpha of
    0, a Token Prepending start of 0, an empty demonstration) is refused here, before
    any model loads, with the field and the value in the message.

    Raises:
        ValueError: If a candidate is malformed or invalid, or a demonstration sentence
            is one the selection scores (``held_out``).
    """
    variants: list[dict[str, Any]] = [{}]
    if demonstrations is not None:
        groups = read_demonstrations(demonstrations)
        leaked = [s for group in groups for s, _ in group if s in held_out]
        if leaked:
            raise ValueError(
                f"demonstration sentences must come from the fit part, not the selection "
                f"part; these are in it: {leaked}"
            )
        variants += [{"demonstrations": group} for group in groups]
    variants += [{"token_prepending": span} for span in parse_spans(spans)]
    variants += [{"contrastive": setting} for setting in parse_contrastive(contrastive)]
    fields = base.model_dump()
    for variant in variants:
        type(base).model_validate({**fields, **variant})  # pydantic's error names the field
    return variants


# -- the data --------------------------------------------------------------------------------


def selection_data(
    data: Path | None, train: Path | None, size: int, sample: Sequence[Path] | None, limit: int
) -> tuple[list[Pair], list[str] | None]:
    """The pairs to select on and the calibration sample (from the fit part with ``train``).

    With ``data`` its pairs are scored and ``sample`` (if any) is the calibration
    sample. With ``train`` it is split (:func:`split_train`); without ``sample`` the
    calibration sample is up to ``limit`` seeded sentences of the fit part.

    Raises:
        ValueError: Unless exactly one of ``data`` and ``train`` is given.
    """
    if (data is None) == (train is None):
        raise ValueError("tune needs exactly one of --data or --train")
    if data is not None:
        return read_sts(data), read_texts(list(sample), limit=limit) if sample else None
    fit, pairs = split_train(read_sts(train), selection=size)
    if sample:
        return pairs, read_texts(list(sample), limit=limit)
    fit_texts = sorted({s for a, b, _ in fit for s in (a, b)})
    rng = np.random.default_rng(0)
    picked = rng.permutation(len(fit_texts))[:limit]
    return pairs, [fit_texts[i] for i in sorted(picked.tolist())]


# -- STS: search, write, score dev -----------------------------------------------------------


@dataclass(frozen=True)
class StsTuneOptions:
    """What :func:`tune_sts_config` searches, and on which data (``promptembed tune``'s options).

    Example:
        >>> StsTuneOptions(data=Path("dev.csv"), templates=("eol", "ke")).max_ensemble
        3

    """

    data: Path | None = None
    """Labelled STS CSV to select on (exactly one of ``data`` and ``train``)."""
    train: Path | None = None
    """Labelled train CSV, split into a fit part and a selection part."""
    selection_size: int = 1500
    """Pairs in the selection part (with ``train``)."""
    dev: Path | None = None
    """Untouched STS CSV; the winner alone is scored on it, after selection."""
    templates: Sequence[str] = ("eol", "sth", "sum", "cot", "ke")
    """Templates to try."""
    sample: Sequence[Path] | None = None
    """Unlabeled text files to fit calibrations on."""
    limit: int = 2000
    """Max calibration sample texts."""
    demonstrations: Path | None = None
    """JSON file of candidate demonstrations."""
    token_prepending: str = ""
    """Token Prepending spans to try, e.g. ``"1-4,1-8"``."""
    contrastive: str = ""
    """Contrastive settings to try (block:alpha), e.g. ``"8:1,12:0.5"``."""
    max_ensemble: int = 3
    """Largest ensemble tried."""


@dataclass
class StsTuneOutcome:
    """What :func:`tune_sts_config` found and wrote.

    Example:
        >>> options = StsTuneOptions(data=Path("dev.csv"))
        >>> outcome = tune_sts_config(Path("pe.toml"), options)  # doctest: +SKIP
        >>> outcome.summary["selection"] == outcome.result.best.spearman  # doctest: +SKIP
        True

    """

    result: TuneResult
    """Every scored candidate, best first."""
    summary: dict[str, Any]
    """``winner``, ``selection`` (its score), ``pairs``; ``dev`` and ``difference`` with dev."""
    winner: str | list[str]
    """The winner's template (a list for an ensemble), as written to the config."""
    calibration: str | None
    """The winner's calibration file name, or None when it has none."""


def tune_sts_config(
    config: Path, options: StsTuneOptions, *, write: bool = True, show_progress: bool = True
) -> StsTuneOutcome:
    """Search template × layer × booster (× calibration × ensembles) on STS; keep the winner.

    Every candidate is validated before the model loads. Without ``write`` nothing is
    written to ``config``; a calibration the winner needs to be scored on dev is then
    saved into a temporary folder.

    Args:
        config: TOML config whose ``[embedder]`` supplies the model; the winner is
            written into it when ``write``.
        options: The candidates and the data.
        write: Write the winner (and its calibration file) into ``config``.
        show_progress: Show the embedder's progress bars.

    Returns:
        The ranking, the summary, and the winner's template and calibration file.

    Raises:
        ValueError: On bad data, candidates or config, all before the model loads.
    """
    o = options
    cfg = load_config(config)
    pairs, texts = selection_data(o.data, o.train, o.selection_size, o.sample, o.limit)
    held_out = {s for a, b, _ in pairs for s in (a, b)}
    base = cfg.embedder.model_copy(
        update={**dict.fromkeys(_TUNED_FIELDS), "show_progress": show_progress}
    )
    variants = booster_variants(base, o.demonstrations, o.token_prepending, o.contrastive, held_out)
    embedder = PromptEmbedder(config=base)
    result = tune(
        embedder,
        pairs,
        templates=list(o.templates),
        sample=texts,
        max_ensemble=o.max_ensemble,
        variants=variants,
    )
    best = result.best
    winner = list(best.templates) if len(best.templates) > 1 else best.templates[0]
    # Validated (not model_copy): the variant's lists become the fields' tuples.
    chosen = type(base).model_validate({**base.model_dump(), "template": winner, **best.variant})
    # Without `write` a calibration still has to exist to score the winner on dev.
    folder = config.parent if write else Path(tempfile.mkdtemp(prefix="promptembed-"))
    calibration = _fit_winner(embedder, chosen, best, texts, folder)
    if write:
        write_fields(config, "embedder", _embedder_fields(winner, calibration, best))
    summary = {"winner": best.__dict__, "selection": best.spearman, "pairs": len(pairs)}
    if o.dev is not None:
        path = str(folder / calibration) if calibration else None
        summary["dev"] = _score_dev(chosen, path, o.dev)
        summary["difference"] = round(summary["dev"] - best.spearman, 2)
    return StsTuneOutcome(result, summary, winner, calibration)


def _embedder_fields(
    winner: str | list[str], calibration: str | None, best: Candidate
) -> dict[str, Any]:
    """The ``[embedder]`` keys the winner sets; ``None`` removes a key."""
    return {
        "template": winner,
        "layer": None,
        "calibration": calibration,
        "demonstrations": best.variant.get("demonstrations"),
        "token_prepending": _listed(best.variant.get("token_prepending")),
        "contrastive": _listed(best.variant.get("contrastive")),
    }


def _listed(value: Any) -> Any:
    """A tuple as a list, which TOML writes as an array."""
    return list(value) if isinstance(value, tuple) else value


def _fit_winner(
    embedder: PromptEmbedder,
    chosen: EmbedderConfig,
    best: Candidate,
    texts: list[str] | None,
    folder: Path,
) -> str | None:
    """Fit the winner's calibration (when it has one) and save it into ``folder``."""
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


def _score_dev(chosen: EmbedderConfig, calibration: str | None, dev: Path) -> float:
    """The winner's Spearman on dev, loaded exactly as ``eval sts --config`` loads it."""
    final = type(chosen).model_validate({**chosen.model_dump(), "calibration": calibration})
    return round(evaluate_sts(PromptEmbedder(config=final), read_sts(dev)).spearman, 2)


# -- retrieval: the [retrieval] table ---------------------------------------------------------


def tune_retrieval_config(
    config: Path,
    corpus: Path | Sequence[Path],
    queries: Path | Sequence[Path],
    qrels: Path | Sequence[Path],
    *,
    write: bool = True,
    show_progress: bool = True,
) -> RetrievalTuneResult:
    """Pick ``[retrieval]`` on one or more collections (:func:`tune_retrieval`); write it.

    Returns:
        Every setting with its scores, best first.

    Raises:
        ValueError: On a bad config or data.
    """
    cfg = load_config(config)
    embedder_cfg = cfg.embedder.model_copy(update={"show_progress": show_progress})
    result = tune_retrieval(
        cfg.model_copy(update={"embedder": embedder_cfg}), corpus, queries, qrels
    )
    if write:
        write_fields(config, "retrieval", retrieval_fields(result.best.retrieval))
    return result


def retrieval_fields(r: Any) -> dict[str, Any]:
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
    table = tomlkit.inline_table()
    table.update(values)
    return table

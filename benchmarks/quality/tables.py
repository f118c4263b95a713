"""Render the README's quality tables from benchmarks/quality/results (markdown on stdout).

    python -m benchmarks.quality.tables

The booster table also reads ``benchmarks/probes/results/whitening-*-best.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from benchmarks.common import ROOT, results_dir
from promptembed.templates import Template

RES = results_dir(__file__)
WHITENING = ROOT / "benchmarks" / "probes" / "results"  # whitening_probe's outputs


def default_layer(template: str) -> int:
    """The layer a paper template pools by default, as the library defines it."""
    return Template.parse(template).layer


RUNS = [
    ("smollm2-en", "SmolLM2-135M", "en"),
    ("gemma-en", "Gemma-3-270M", "en"),
    ("gemma-zh", "Gemma-3-270M", "zh"),
]


def load_tune(name: str) -> list[dict] | None:
    path = RES / f"tune-{name}.json"
    if not path.is_file() or not path.stat().st_size:
        return None
    return json.loads(path.read_text())


def default_single(rows: list[dict], template: str, calibrated: bool = False) -> float | None:
    key = [f"{template}@{default_layer(template)}"]
    return next(
        (r["spearman"] for r in rows if r["templates"] == key and r["calibrated"] == calibrated),
        None,
    )


def direct_scores() -> dict[tuple[str, str, str], float]:
    """``promptembed eval sts`` results keyed by (model, lang, template or 'mean')."""
    out = {}
    for line in (RES / "sts-dev.jsonl").read_text().splitlines():
        r = json.loads(line)
        label = "mean" if r["template"] == "none" else r["template"]
        out[(r["model"], r["lang"], label)] = r["spearman"]
    return out


MODELS = {"SmolLM2-135M": "smollm2-135m", "Gemma-3-270M": "gemma-3-270m"}


def paper_scores(name: str, pretty: str, lang: str) -> dict[str, float]:
    """The five paper templates at their default layers: direct runs, else tune's grid."""
    direct, rows = direct_scores(), load_tune(name) or []
    out = {}
    for t in ("eol", "sth", "sum", "cot", "ke"):
        v = direct.get((MODELS[pretty], lang, t))
        out[t] = v if v is not None else default_single(rows, t)
    return {t: v for t, v in out.items() if v is not None}


def sts_table() -> str:
    """Paper templates at their default layers, plus the no-prompt mean baseline."""
    direct = direct_scores()
    out = [
        "| model | lang | eol | sth | sum | cot | ke | mean (no prompt) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, pretty, lang in RUNS:
        scores = paper_scores(name, pretty, lang)
        scores["mean"] = direct.get((MODELS[pretty], lang, "mean"))
        cells = [scores.get(t) for t in ("eol", "sth", "sum", "cot", "ke", "mean")]
        out.append(
            f"| {pretty} | {lang} | "
            + " | ".join(f"{v:.2f}" if v is not None else "n/m" for v in cells)
            + " |"
        )
    return "\n".join(out)


def whitened(name: str) -> dict | None:
    """benchmarks/probes/whitening_probe.py on the shipped config, if it was run."""
    path = WHITENING / f"whitening-{name}-best.json"
    if not path.is_file() or not path.stat().st_size:
        return None
    return json.loads(path.read_text().strip().splitlines()[-1])


def booster_table() -> str:
    out = [
        "| model | lang | paper best (template) | + centering | + tuned layer | + ensemble "
        "| best of tune | shipped config, whitening probed | gain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, pretty, lang in RUNS:
        rows = load_tune(name)
        if rows is None:
            out.append(f"| {pretty} | {lang} | not measured | | | | | |")
            continue
        paper_all = paper_scores(name, pretty, lang)
        paper_t = max(paper_all, key=lambda t: paper_all[t])
        paper = paper_all[paper_t]
        centered = default_single(rows, paper_t, calibrated=True)
        layer = max(
            (r for r in rows if len(r["templates"]) == 1 and not r["calibrated"]),
            key=lambda r: r["spearman"],
        )
        ens = max(
            (r for r in rows if len(r["templates"]) > 1 and not r["calibrated"]),
            key=lambda r: r["spearman"],
            default=None,
        )
        best = rows[0]

        def fmt(r: dict | None) -> str:
            if r is None:
                return "n/m"
            tag = " + ".join(r["templates"]) + (", centered" if r["calibrated"] else "")
            return f"{r['spearman']:.2f} ({tag})"

        centered_cell = f"{centered:.2f}" if centered is not None else "n/m"
        shipped, final = whitened(name), best["spearman"]
        if shipped is not None:
            tag = shipped["template"]
            tag = " + ".join(tag) if isinstance(tag, list) else tag
            final = max(final, shipped[shipped["best"]])
            shipped_cell = f"{shipped[shipped['best']]:.2f} ({tag}, {shipped['best']})"
        else:
            shipped_cell = "n/m"
        out.append(
            f"| {pretty} | {lang} | {paper:.2f} ({paper_t}) | "
            f"{centered_cell} | {fmt(layer)} | {fmt(ens)} | {fmt(best)} | {shipped_cell} | "
            f"{final - paper:+.2f} |"
        )
    return "\n".join(out)


def zh_table() -> str:
    """Chinese templates against the paper's, Gemma on STS-B zh dev (default layers)."""
    rows = load_tune("gemma-zh")
    if rows is None:
        return "(not measured)"
    names = ("eol", "cot", "ke", "zh-eol", "zh-ke")
    cells = [default_single(rows, t) for t in names]
    head = "| model | " + " | ".join(names) + " |"
    body = (
        "| Gemma-3-270M, zh dev | "
        + " | ".join(f"{v:.2f}" if v is not None else "n/m" for v in cells)
        + " |"
    )
    return "\n".join([head, "|---|" + "---|" * len(names), body])


GRID_MODELS = [("smollm2-135m", "SmolLM2-135M"), ("gemma-3-270m", "Gemma-3-270M")]


def load_grid(model: str) -> list[dict] | None:
    """benchmarks/quality/retrieval_grid.py's scored rows for one model."""
    path = RES / f"scifact-grid-{model}.jsonl"
    if not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _paper_row(rows: list[dict], template: str) -> dict | None:
    layer = default_layer(template)
    return next(
        (
            r
            for r in rows
            if r["template"] == template == r["query_template"]
            and r["layer"] == layer
            and r["calibration"] == "none"
        ),
        None,
    )


def _cell(row: dict | None, tag: bool = True) -> str:
    if row is None:
        return "n/m"
    text = f"{row['ndcg@10']:.4f} / {row['recall@100']:.4f}"
    if not tag:
        return text
    t, q = row["template"], row["query_template"]
    if isinstance(t, str):
        label = f"{t}@{row['layer']}" + ("" if q == t else f", query {q}")
    else:
        label = " + ".join(t) + (
            ""
            if [x.split("@")[0] for x in q] == [x.split("@")[0] for x in t]
            else ", queries " + " + ".join(dict.fromkeys(q))  # a repeated prompt once
        )
    if row["calibration"] != "none":
        label += f", {row['calibration']}"
    return f"{text} ({label})"


def scifact_table() -> str:
    """Issue 3's view: BM25 and the paper templates on SciFact train, one row each."""
    out = ["| system | template (layer) | nDCG@10 | Recall@100 |", "|---|---|---|---|"]
    for line in (RES / "scifact-train.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["system"] == "bm25s":
            out.append(f"| BM25 (bm25s) | – | {row['ndcg@10']:.4f} | {row['recall@100']:.4f} |")
            break
    for model, pretty in GRID_MODELS:
        rows = load_grid(model)
        for t in ("eol", "cot", "ke"):
            r = _paper_row(rows, t) if rows else None
            cells = f"{r['ndcg@10']:.4f} | {r['recall@100']:.4f}" if r else "n/m | n/m"
            out.append(f"| {pretty} | {t} ({default_layer(t)}) | {cells} |")
    return "\n".join(out)


def _best(rows: list[dict], pred: Callable[[dict], bool]) -> dict | None:
    pool = [r for r in rows if pred(r)]
    return max(pool, key=lambda r: r["ndcg@10"]) if pool else None


def _single(r: dict) -> bool:
    return isinstance(r["template"], str)


def _symmetric(r: dict) -> bool:
    return _single(r) and r["query_template"] == r["template"]


def _booster_cells(rows: list[dict], base: dict) -> list[dict | None]:
    """+ query template, + calibration, + ensemble, + tuned layer, best combination."""
    t0, l0 = base["template"], base["layer"]
    return [
        _best(
            rows,
            lambda r: (
                _single(r)
                and (r["template"], r["layer"]) == (t0, l0)
                and r["calibration"] == "none"
            ),
        ),
        _best(rows, lambda r: _symmetric(r) and (r["template"], r["layer"]) == (t0, l0)),
        _best(rows, lambda r: not _single(r) and r["calibration"] == "none"),
        _best(rows, lambda r: _symmetric(r) and r["calibration"] == "none"),
        _best(rows, lambda r: True),
    ]


def scifact_booster_table() -> str:
    """Issue 5's rows on SciFact train: each booster added to the paper's best template."""
    out = [
        "| model | paper best | + query template | + calibration | + ensemble "
        "| + tuned layer | best combination | gain (nDCG@10) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, pretty in GRID_MODELS:
        rows = load_grid(model)
        if rows is None:
            out.append(f"| {pretty} | not measured | | | | | | |")
            continue
        paper = [r for t in ("eol", "cot", "ke") if (r := _paper_row(rows, t))]
        base = max(paper, key=lambda r: r["ndcg@10"])
        cells = _booster_cells(rows, base)
        top = cells[-1] or base
        out.append(
            f"| {pretty} | {_cell(base)} | "
            + " | ".join(_cell(c) for c in cells)
            + f" | {top['ndcg@10'] - base['ndcg@10']:+.4f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    print("### STS-B dev, paper templates\n")
    print(sts_table())
    print("\n### STS-B dev, training-free boosters\n")
    print(booster_table())
    print("\n### Chinese templates\n")
    print(zh_table())
    print("\n### SciFact train, paper templates\n")
    print(scifact_table())
    print("\n### SciFact train, boosters\n")
    print(scifact_booster_table())

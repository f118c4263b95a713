"""Render the README's quality tables from benchmarks/results (markdown on stdout).

python benchmarks/tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

RES = Path(__file__).parent / "results"
DEFAULT_LAYER = {
    "eol": -1,
    "sth": -1,
    "sum": -1,
    "cot": -2,
    "ke": -2,
    "zh-eol": -1,
    "zh-cot": -2,
    "zh-ke": -2,
}
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
    key = [f"{template}@{DEFAULT_LAYER[template]}"]
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
    """benchmarks/whitening_probe.py on the shipped config, if it was run."""
    path = RES / f"whitening-{name}-best.json"
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


if __name__ == "__main__":
    print("### STS-B dev, paper templates\n")
    print(sts_table())
    print("\n### STS-B dev, training-free boosters\n")
    print(booster_table())
    print("\n### Chinese templates\n")
    print(zh_table())

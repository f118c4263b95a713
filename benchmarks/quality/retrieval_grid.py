"""SciFact grid: one multi-layer pass per (model, template), every booster scored offline.

Phase ``embed`` runs each document template once over the corpus, capturing several
layers in the same forward (``PromptEmbedder.embed_layers``), and each query template
over the train queries; vectors are stored under ``--store``. Phase ``score`` then
ranks, without touching the model again:

* paper templates alone (symmetric: the query uses the document template),
* + a retrieval query template (``query``, ``claim``, ...),
* + tuned layer,
* + calibration (centering or whitening to k dims) fitted on the unlabeled corpus
  vectors -- what ``promptembed calibrate`` fits on a user's own collection,
* + ensembles (mean of unit vectors, as ``template = [...]`` does),

and writes every scored row to ``--out`` (JSON lines) plus the best per group. The
retrieval metrics are :func:`promptembed.evaluation.ndcg_recall`, the same as
``promptembed eval retrieval``; ``--check`` re-scores the winner through that CLI path.

    python -m benchmarks.quality.retrieval_grid embed --model smollm2-135m --templates ke cot eol
    python -m benchmarks.quality.retrieval_grid score --model smollm2-135m
    python -m benchmarks.quality.retrieval_grid write   # -> examples/configs/best-retrieval.toml

``score`` writes ``benchmarks/quality/results/scifact-grid-<model>.jsonl`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SCIFACT, results_dir
from benchmarks.quality.tables import scifact_booster_table
from promptembed._util.vectors import unit
from promptembed.engine.calibration import Calibration
from promptembed.evaluation import ndcg_recall, read_beir
from promptembed.evaluation.retrieval import rank_by_vectors

RESULTS = results_dir(__file__)
STORE = Path.home() / ".cache/promptembed/grid"
LAYERS = [-1, -2, -3, -4, -5, -6, -8, -10]


def _mean_unit(members: list[np.ndarray]) -> np.ndarray:
    """An ensemble: the mean of its members' unit vectors, as the embedder computes it."""
    return np.mean([unit(m) for m in members], axis=0)


def embed(args: argparse.Namespace) -> None:
    """Store ``(n, layers, hidden)`` vectors per template for the corpus and the queries."""
    from promptembed import PromptEmbedder

    docs, queries, _ = read_beir(*_paths(args))
    embedder = PromptEmbedder(args.model, max_length=args.max_length, show_progress=True)
    out = args.store / args.model
    out.mkdir(parents=True, exist_ok=True)
    # Queries first: they are short, so a broken setup shows within a minute.
    jobs = [("queries", t, list(queries.values())) for t in args.query_templates] + [
        ("docs", t, list(docs.values())) for t in args.templates
    ]
    for kind, template, texts in jobs:
        path = out / f"{kind}-{template}-L{args.max_length}.npy"
        if path.exists():
            continue
        start = time.perf_counter()
        vectors = embedder.embed_layers(texts, template, args.layers)
        np.save(path, vectors.astype(np.float32))
        meta = {"layers": args.layers, "n": len(texts), "seconds": time.perf_counter() - start}
        path.with_suffix(".json").write_text(json.dumps(meta))
        print(json.dumps({"stored": str(path), **meta}), flush=True)


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    return (
        args.data / "corpus.jsonl",
        args.data / "queries.jsonl",
        args.data / "qrels" / f"{args.split}.tsv",
    )


def _fit(docs: np.ndarray, label: str, fitted_on: dict | None = None) -> Calibration | None:
    """The product's calibration for a grid label (``none``, ``center``, ``whiten-<k>``)."""
    if label == "none":
        return None
    method, _, dims = label.partition("-")
    return Calibration.fit(
        docs,
        method=method,  # type: ignore[arg-type]
        dims=int(dims) if dims else None,
        fitted_on=fitted_on,
    )


def _layers(root: Path, max_length: int) -> list[int]:
    """The layers the stored vectors hold (the same for every file of one run)."""
    return json.loads(next(root.glob(f"docs-*-L{max_length}.json")).read_text())["layers"]


def score(args: argparse.Namespace) -> None:
    """Score the grid from stored vectors; print the README's SciFact booster table."""
    docs, queries, judged = read_beir(*_paths(args))
    doc_ids, qids = list(docs), list(queries)
    qrels = {q: judged[q] for q in qids}
    root = args.store / args.model
    L = args.max_length

    def load(kind: str, template: str) -> np.ndarray | None:
        path = root / f"{kind}-{template}-L{L}.npy"
        return np.load(path) if path.exists() else None

    layers = _layers(root, L)
    doc_t = [t for t in args.templates if load("docs", t) is not None]
    query_t = [t for t in args.query_templates if load("queries", t) is not None]
    dvec = {t: load("docs", t) for t in doc_t}
    qvec = {t: load("queries", t) for t in query_t}
    rows: list[dict] = []

    def run(d: np.ndarray, q: np.ndarray, **label: object) -> dict:
        ndcg, recall = ndcg_recall(dict(zip(qids, rank_by_vectors(q, d, doc_ids))), qrels)
        row = {**label, "ndcg@10": round(ndcg, 4), "recall@100": round(recall, 4)}
        rows.append(row)
        return row

    def calibrated(d: np.ndarray, q: np.ndarray, **label: object) -> None:
        """Score each calibration, fitted on the document vectors and applied to both."""
        for method in args.calibrations:
            cal = _fit(d, method)
            dd, qq = (d, q) if cal is None else (cal.apply(d), cal.apply(q))
            run(dd, qq, **label, calibration=method)

    def mixed(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """An ensemble: the mean of its members' unit vectors (as the embedder does)."""
        return _mean_unit([a for a, _ in pairs]), _mean_unit([b for _, b in pairs])

    # Single template x query template x layer x calibration.
    singles: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
    for t, qt in itertools.product(doc_t, query_t):
        if qt in doc_t and qt != t:
            continue  # a paper template as query only pairs with itself
        for i, layer in enumerate(layers):
            singles[(t, qt, layer)] = (dvec[t][:, i], qvec[qt][:, i])
            calibrated(*singles[(t, qt, layer)], template=t, query_template=qt, layer=layer)
    # Ensembles of distinct document templates, each at its own best uncalibrated layer
    # and best query template, then calibrated as a whole.
    best_single: dict[str, dict] = {}
    for row in rows:
        cur = best_single.get(row["template"])
        if row["calibration"] == "none" and (cur is None or row["ndcg@10"] > cur["ndcg@10"]):
            best_single[row["template"]] = row
    for size in range(2, len(doc_t) + 1):
        for members in itertools.combinations(doc_t, size):
            picks = [best_single[m] for m in members]
            calibrated(
                *mixed([singles[(p["template"], p["query_template"], p["layer"])] for p in picks]),
                template=[f"{p['template']}@{p['layer']}" for p in picks],
                query_template=[f"{p['query_template']}@{p['layer']}" for p in picks],
                layer=None,
            )
    # Layer ensembles: one template (symmetric) at 2-3 of its 4 best layers.
    for t in (t for t in doc_t if t in query_t):
        ranked = sorted(
            (
                r
                for r in rows
                if r["calibration"] == "none" and r["template"] == t == r["query_template"]
            ),
            key=lambda r: -r["ndcg@10"],
        )[:4]
        for size in (2, 3):
            for picks in itertools.combinations(ranked, size):
                specs = [f"{t}@{p['layer']}" for p in picks]
                calibrated(
                    *mixed([singles[(t, t, p["layer"])] for p in picks]),
                    template=specs,
                    query_template=specs,
                    layer=None,
                )
    out = args.out or RESULTS / f"scifact-grid-{args.model}.jsonl"
    with open(out, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({"model": args.model, "max_length": L, **row}) + "\n")
    print(scifact_booster_table())  # the README's rows, from the results just written


def _members(row: dict) -> list[tuple[str, str, int]]:
    """``(doc template, query template, layer)`` of each member of a scored row."""
    if isinstance(row["template"], str):
        return [(row["template"], row["query_template"], row["layer"])]
    out = []
    for doc, query in zip(row["template"], row["query_template"]):
        name, _, layer = doc.rpartition("@")
        out.append((name, query.rpartition("@")[0], int(layer)))
    return out


def write(args: argparse.Namespace) -> None:
    """Ship the best scored row as a config plus its calibration, fitted on the corpus."""
    import tomlkit

    from promptembed import EmbedderConfig
    from promptembed.engine.calibration import fit_fields
    from promptembed.templates import Template

    rows = [
        json.loads(line)
        for model in args.models
        for line in (RESULTS / f"scifact-grid-{model}.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    rows = [r for r in rows if len(_members(r)) <= args.max_members]
    best = max(rows, key=lambda r: r["ndcg@10"])
    members = _members(best)
    root, L = args.store / best["model"], best["max_length"]
    layers = _layers(root, L)

    def spec(name: str, layer: int) -> str:
        return name if Template.parse(name).layer == layer else f"{name}@{layer}"

    docs = [spec(t, layer) for t, _, layer in members]
    queries = [spec(q, layer) for _, q, layer in members]
    one = len(members) == 1
    # An ensemble of one query template repeated is that template (the mean of equal
    # unit vectors), so it is written once and computed once.
    query: str | list[str] = queries[0] if len(set(queries)) == 1 else queries
    cfg = EmbedderConfig(
        model=best["model"],
        template=docs[0] if one else docs,
        query_template=None if queries == docs else query,
        max_length=L,
    )
    parts = [
        np.load(root / f"docs-{t}-L{L}.npy")[:, layers.index(layer)] for t, _, layer in members
    ]
    vectors = parts[0] if one else _mean_unit(parts)
    fields = {"model": cfg.model, **cfg.model_dump(exclude_defaults=True)}
    target = args.out or Path("examples/configs/best-retrieval.toml")
    cal = _fit(vectors, best["calibration"], fitted_on=fit_fields(cfg))
    if cal is not None:
        fields["calibration"] = cal.save(target.parent).name
    doc = tomlkit.document()
    for line in (
        "Best training-free retrieval configuration on SciFact train queries",
        f"(nDCG@10 {best['ndcg@10']}, Recall@100 {best['recall@100']}), found by",
        "benchmarks/quality/retrieval_grid.py. Its calibration was fitted on the unlabeled SciFact",
        "corpus: refit it on your own documents with `promptembed calibrate`.",
    ):
        doc.add(tomlkit.comment(line))
    doc.add(tomlkit.comment("Written by: python -m benchmarks.quality.retrieval_grid write"))
    doc["embedder"] = fields
    target.write_text(tomlkit.dumps(doc), encoding="utf-8")
    print(json.dumps({"written": str(target), **best}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["embed", "score", "write"])
    parser.add_argument("--model", help="Model of the embed/score phase.")
    parser.add_argument(
        "--models", nargs="+", default=["smollm2-135m", "gemma-3-270m"], help="write: pick from."
    )
    parser.add_argument("--templates", nargs="+", default=["eol", "cot", "ke"])
    parser.add_argument(
        "--query-templates", nargs="+", default=["eol", "cot", "ke", "query", "claim"]
    )
    parser.add_argument("--layers", nargs="+", type=int, default=LAYERS)
    parser.add_argument(
        "--max-members", type=int, default=3, help="write: largest ensemble considered."
    )
    parser.add_argument(
        "--calibrations",
        nargs="+",
        default=["none", "center", "whiten-64", "whiten-128", "whiten-256"],
    )
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--split", default="train")
    parser.add_argument("--store", type=Path, default=STORE)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    {"embed": embed, "score": score, "write": write}[args.phase](args)


if __name__ == "__main__":
    main()

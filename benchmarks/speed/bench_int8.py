"""int8 against float32: STS-B quality cost, and single-query latency against peers.

``quality``: for each (model, template), STS-B dev Spearman ×100 with ``dtype="float32"``
and ``dtype="int8"`` (through :func:`promptembed.evaluation.evaluate_sts`, the code behind
``promptembed eval sts``), and the cosine between the int8 and float32 vector of each
sentence.

``latency``: p50/p95 of ``embed_query`` for one 12-word query (template prefix cached),
float32 and int8, against sentence-transformers ``encode`` of the same prompt with the
same weights (last-token pooling, float32). The systems alternate query by query in one
process, so a burst of load from other jobs hits them alike.

``throughput``: sentences/s of float32 and int8 promptembed (and sentence-transformers
for ``eol``) on STS-B dev sentences, all in one process, taking turns chunk by chunk.

Example (from the repository root; writes ``benchmarks/speed/results/int8-<mode>.json``
unless ``--out`` is given):
    python -m benchmarks.speed.bench_int8 throughput --model smollm2-135m --template eol --n 256
    python -m benchmarks.speed.bench_int8 quality --rows smollm2-135m:ke --threads 1
    python -m benchmarks.speed.bench_int8 latency --model smollm2-135m --template ke --n 200

"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    BUILDERS,
    STS_DEV,
    cosine_rows,
    fit_texts,
    last_token_st,
    load_texts,
    model_dir,
    results_dir,
)

RESULTS = results_dir(__file__)
ROWS = ("smollm2-135m:ke", "smollm2-135m:eol", "gemma-3-270m:eol")
QUERY = "how do plants turn sunlight water and carbon dioxide into sugar"  # 12 words


class _Recorder:
    """Passes ``embed`` through and keeps the vectors (evaluate_sts embeds each sentence
    once, in sorted order, so two recorders hold the same sentences row by row)."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.vectors: np.ndarray | None = None

    def embed(self, texts):
        self.vectors = self.embedder.embed(texts)
        return self.vectors


def quality(args: argparse.Namespace) -> dict:
    """STS-B dev Spearman in float32 and int8, and the cosine between their vectors."""
    from promptembed import PromptEmbedder
    from promptembed.evaluation.sts import evaluate_sts

    rows = []
    for row in args.rows:
        model, template = row.split(":")
        result: dict = {"model": model, "template": template}
        recorders = {}
        for dtype in ("float32", "int8"):
            emb = PromptEmbedder(model, template=template, device="cpu", dtype=dtype)
            recorders[dtype] = _Recorder(emb)
            sts = evaluate_sts(recorders[dtype], args.data)
            result[dtype] = {"spearman": sts.spearman, "seconds": sts.seconds}
            result["sentences"] = sts.sentences
            print(model, template, emb.precision, sts.spearman, sts.seconds, flush=True)
            del emb
        cos = (recorders["float32"].vectors * recorders["int8"].vectors).sum(axis=1)
        result["drop"] = round(result["float32"]["spearman"] - result["int8"]["spearman"], 2)
        result["cosine_mean"] = float(cos.mean())
        result["cosine_min"] = float(cos.min())
        rows.append(result)
    return {"data": str(args.data), "rows": rows}


def _sentence_transformers(model: str, template: str):
    """sentence-transformers over the same converted weights, last-token pooling, fp32."""
    from promptembed.templates import Template

    st = last_token_st(str(model_dir(model)))
    tpl = Template.parse(template)
    return lambda text: st.encode(tpl.render(text), convert_to_numpy=True)


def latency(args: argparse.Namespace) -> dict:
    """p50/p95 of one-query calls, the systems interleaved query by query."""
    from promptembed import PromptEmbedder

    systems, startup = {}, {}
    for dtype in ("float32", "int8", "float32", "int8"):  # the second load of each counts
        t0 = time.perf_counter()
        emb = PromptEmbedder(args.model, template=args.template, device="cpu", dtype=dtype)
        startup[f"promptembed {dtype}"] = time.perf_counter() - t0
        systems[f"promptembed {dtype}"] = emb.embed_query
    if args.template == "eol" or args.peers:
        # sentence-transformers pools the last layer: the same vector only for eol; for
        # other templates it times the same prompt through the whole model.
        systems["sentence-transformers float32"] = _sentence_transformers(args.model, args.template)
    queries = [f"{QUERY} {i}" if args.vary else QUERY for i in range(args.n)]
    for call in systems.values():
        for _ in range(5):
            call(QUERY)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in systems}
    for query in queries:
        for name, call in systems.items():
            t0 = time.perf_counter()
            call(query)
            times[name].append(time.perf_counter() - t0)
    out = {}
    base = np.percentile(times["promptembed float32"], 50)
    for name, values in times.items():
        ms = np.asarray(values) * 1e3
        out[name] = {
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()),
            "p50_speedup_vs_promptembed_float32": float(base * 1e3 / np.percentile(ms, 50)),
        }
    return {
        "model": args.model,
        "template": args.template,
        "query": QUERY,
        "n": args.n,
        "startup_s": startup,
        "systems": out,
    }


def throughput(args: argparse.Namespace) -> dict:
    """Sentences/s of float32 and int8 promptembed (and sentence-transformers for eol),
    all in this process, taking turns chunk by chunk so that load from other jobs on a
    shared machine falls on every system alike (bench_throughput runs each system in
    its own process, one after another, which a busy machine skews)."""
    from transformers import AutoTokenizer

    from promptembed.templates import Template

    directory = model_dir(args.model)
    template = Template.parse(args.template)
    tok = AutoTokenizer.from_pretrained(directory)
    texts = fit_texts(load_texts("sts", args.n), tok, template, 512)
    spec = {"model": args.model, "dir": str(directory), "template": args.template}
    spec.update(max_length=512, texts=texts)
    names = ["promptembed", "promptembed-int8"]
    if template.layer == -1:
        names.append("sentence-transformers")  # it pools the last layer only
    systems = {name: BUILDERS[name](spec) for name in names}
    for encode in systems.values():
        encode(texts[:4])  # warm-up
    seconds = dict.fromkeys(systems, 0.0)
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in systems}
    chunks = [texts[i : i + args.chunk] for i in range(0, len(texts), args.chunk)]
    for turn, chunk in enumerate(chunks):
        order = names[turn % len(names) :] + names[: turn % len(names)]  # rotate who goes first
        for name in order:
            t0 = time.perf_counter()
            vectors[name].append(np.asarray(systems[name](chunk), dtype=np.float32))
            seconds[name] += time.perf_counter() - t0
    rates = {name: len(texts) / s for name, s in seconds.items()}
    exact, fast = (
        np.concatenate(vectors["promptembed"]),
        np.concatenate(vectors["promptembed-int8"]),
    )
    cos = cosine_rows(exact, fast)
    out = {
        "model": args.model,
        "template": args.template,
        "n": len(texts),
        "chunk": args.chunk,
        "sentences_per_s": rates,
        "int8_speedup_vs_promptembed_float32": rates["promptembed-int8"] / rates["promptembed"],
        "int8_cosine_vs_float32_mean": float(cos.mean()),
        "int8_cosine_vs_float32_min": float(cos.min()),
    }
    if "sentence-transformers" in rates:
        st = rates["sentence-transformers"]
        out["int8_speedup_vs_sentence_transformers"] = rates["promptembed-int8"] / st
        out["float32_speedup_vs_sentence_transformers"] = rates["promptembed"] / st
    return out


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--rows", nargs="+", default=list(ROWS), help="model:template")
    q.add_argument("--data", type=Path, default=STS_DEV)
    lat = sub.add_parser("latency")
    lat.add_argument("--model", default="smollm2-135m")
    lat.add_argument("--template", default="ke")
    lat.add_argument("--n", type=int, default=200, help="queries per system")
    lat.add_argument("--vary", action="store_true", help="append the query's number to it")
    lat.add_argument("--peers", action="store_true", help="sentence-transformers for any template")
    tp = sub.add_parser("throughput")
    tp.add_argument("--model", default="smollm2-135m")
    tp.add_argument("--template", default="eol")
    tp.add_argument("--n", type=int, default=256, help="STS-B dev sentences")
    tp.add_argument("--chunk", type=int, default=32, help="texts per turn")
    for sp in (q, lat, tp):
        sp.add_argument("--threads", type=int, default=1, help="torch threads")
        sp.add_argument("--out", type=Path)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    res = {"quality": quality, "latency": latency, "throughput": throughput}[args.mode](args)
    res.update(threads=args.threads, load_average_1m_before_after=[load, os.getloadavg()[0]])
    out = args.out or RESULTS / f"int8-{args.mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

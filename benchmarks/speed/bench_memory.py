"""Peak memory stays flat as the input grows: stream 1k, 10k, 100k documents.

A tiny random Llama (:func:`benchmarks.common.build_tiny_llama`, built like
``tests/conftest.py``: small config, a byte-level BPE tokenizer trained in a second,
saved to a temporary directory) embeds SciFact-length
documents, the corpus cycled to each size and written to a JSONL file. Each size runs
in its own subprocess, which reads the file lazily with a generator, streams it
through :meth:`PromptEmbedder.embed_iter` and writes the vectors into an ``np.memmap``
(re-mapped per chunk, so written pages do not stay in the process's RSS). It reports
the peak RSS (``ru_maxrss``), the RSS once the model is loaded, and their difference.

Example (from the repository root; writes ``benchmarks/speed/results/memory.json``):
    python -m benchmarks.speed.bench_memory --sizes 1000 10000 100000

"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, SCIFACT_CORPUS, build_tiny_llama, read_docs, results_dir

RESULTS = results_dir(__file__)


def write_corpus(target: Path, corpus: Path, n: int) -> None:
    """Write ``n`` documents, cycling the corpus, one JSON string per line."""
    docs = list(read_docs(corpus))
    with target.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(docs[i % len(docs)]) + "\n")


def lines(path: Path) -> Iterator[str]:
    """The texts of a file written by :func:`write_corpus`, lazily."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def rss_mb() -> float:
    """Current resident set size, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(model: Path, texts: Path, n: int, out: Path, args: argparse.Namespace) -> None:
    """Stream one file through ``embed_iter`` into a memmap; print JSON."""
    import warnings

    import torch

    from promptembed import PromptEmbedder

    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # truncation warnings: long documents are cut on purpose
    emb = PromptEmbedder(
        str(model), template=args.template, device="cpu", max_length=args.max_length
    )
    emb.embed(["warm-up"])
    loaded = rss_mb()
    dim = emb.dimension
    np.memmap(out, dtype=np.float32, mode="w+", shape=(n, dim)).flush()
    start, t0 = 0, time.perf_counter()
    for chunk in emb.embed_iter(lines(texts), chunk_size=args.chunk_size):
        # Map, write, unmap: written file pages leave this process's RSS.
        mm = np.memmap(out, dtype=np.float32, mode="r+", shape=(n, dim))
        mm[start : start + len(chunk)] = chunk
        mm.flush()
        del mm
        start += len(chunk)
    wall = time.perf_counter() - t0
    check = np.memmap(out, dtype=np.float32, mode="r", shape=(n, dim))
    ok = (
        start == n
        and bool(np.isfinite(check[-1]).all())
        and abs(float(np.linalg.norm(check[-1])) - 1) < 1e-3
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "n": n,
                "seconds": wall,
                "texts_per_s": n / wall,
                "rss_after_load_mb": loaded,
                "peak_rss_mb": peak,
                "growth_mb": peak - loaded,
                "all_written": ok,
            }
        )
    )


def summarize(rows: list[dict], chunk_size: int) -> dict:
    """Peak ratios, and whether memory is flat.

    ``embed_iter`` holds one chunk of ``chunk_size`` texts, so a size smaller than one
    chunk peaks lower by construction. Flat means: among the sizes that fill at least
    one chunk, the largest input's peak is within 10% of the smallest's.
    """
    peaks = [r["peak_rss_mb"] for r in rows]
    full = [r["peak_rss_mb"] for r in rows if r["n"] >= chunk_size] or peaks
    return {
        "peak_spread_mb": max(peaks) - min(peaks),
        "peak_ratio_largest_to_smallest": peaks[-1] / peaks[0],
        "peak_ratio_over_full_chunks": full[-1] / full[0],
        "flat": full[-1] <= 1.10 * full[0],
    }


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--max-length", type=int, default=256, help="max prompt tokens")
    p.add_argument("--template", default="ke")
    p.add_argument("--chunk-size", type=int, default=4096, help="embed_iter chunk size")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--corpus", type=Path, default=SCIFACT_CORPUS)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    p.add_argument(
        "--worker", nargs=4, metavar=("MODEL", "TEXTS", "N", "OUT"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.worker:
        model, texts, n, out = args.worker
        worker(Path(model), Path(texts), int(n), Path(out), args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "tiny-llama"
        build_tiny_llama(model, args.corpus)
        for n in args.sizes:
            texts = Path(tmp) / f"docs-{n}.jsonl"
            write_corpus(texts, args.corpus, n)
            cmd = [
                sys.executable, "-m", "benchmarks.speed.bench_memory", "--worker",
                str(model), str(texts), str(n),
                str(Path(tmp) / f"vectors-{n}.f32"), "--max-length", str(args.max_length),
                "--template", args.template, "--chunk-size", str(args.chunk_size),
                "--threads", str(args.threads),
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
            if proc.returncode != 0:
                sys.exit(f"size {n} failed:\n{proc.stderr[-3000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            texts.unlink()
            (Path(tmp) / f"vectors-{n}.f32").unlink()
    res = {
        "model": "tiny random Llama (hidden 64, 3 layers, BPE vocab 2048)",
        "template": args.template,
        "max_length": args.max_length,
        "chunk_size": args.chunk_size,
        "threads": args.threads,
        "rows": rows,
        **summarize(rows, args.chunk_size),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"{'texts':>8}{'seconds':>9}{'texts/s':>9}{'RSS load MB':>13}{'peak MB':>9}{'growth':>8}")
    for r in rows:
        print(
            f"{r['n']:>8}{r['seconds']:>9.1f}{r['texts_per_s']:>9.0f}"
            f"{r['rss_after_load_mb']:>13.0f}{r['peak_rss_mb']:>9.0f}{r['growth_mb']:>8.0f}"
        )
    print(
        f"peak x{res['peak_ratio_largest_to_smallest']:.2f} from the smallest to the largest size, "
        f"x{res['peak_ratio_over_full_chunks']:.2f} between sizes that fill a chunk -> "
        f"{'flat' if res['flat'] else 'NOT flat'}"
    )


if __name__ == "__main__":
    main()

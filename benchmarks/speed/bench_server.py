"""Load test of ``promptembed serve``: throughput and p50/p99 latency against in-process calls.

1. In this process, on the same request list, direct ``embedder.embed`` calls are timed:
   ``direct-seq`` (one caller, one call per request) and ``direct-c`` (``c`` threads calling
   the shared embedder at once: its lock serialises them, nothing is batched).
2. The embedder is freed and the real server starts in a second process
   (``promptembed serve`` on a free 127.0.0.1 port) from the same embedder config.
3. This process drives it over loopback at rising concurrency (default 1, 4, 16, 32
   asyncio clients, each sending its share of a bounded number of requests), checks
   every answer against the direct vectors, and reports throughput (texts/s), p50/p99
   request latency, mean batch size and their ratios to the direct runs.

The result is one JSON file (``--out``) and a table on stdout.

Example (from the repository root):
    python -m benchmarks.speed.bench_server --model smollm2-135m --template ke \
        --concurrency 1,4,16,32 --requests 64 --inputs 4 \
        --out benchmarks/speed/results/server-load-cpu.json

"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import STS_DEV, free_port, results_dir, sts_sentences

RESULTS = results_dir(__file__)


def load_texts(n: int, path: Path = STS_DEV) -> list[str]:
    """``n`` distinct STS-B dev sentences (cycled if the file has fewer), or synthetic ones."""
    texts = sts_sentences(path) if path.is_file() else []
    if not texts:
        texts = [f"Sentence number {i} is about topic {i % 17}." for i in range(n)]
    return [texts[i % len(texts)] for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def summarise(latencies: list[float], wall: float, texts: int) -> dict[str, float]:
    return {
        "throughput_texts_per_s": texts / wall,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "wall_s": wall,
    }


# -- direct, in-process ------------------------------------------------------------------
def run_direct(embedder: Any, requests: list[list[str]], concurrency: int) -> dict[str, float]:
    """``concurrency`` threads each embedding their share of the requests, one call each."""
    latencies: list[float] = []
    lock = threading.Lock()
    shares = [requests[i::concurrency] for i in range(concurrency)]

    def worker(share: list[list[str]]) -> None:
        for texts in share:
            t0 = time.perf_counter()
            embedder.embed(texts)
            took = time.perf_counter() - t0
            with lock:
                latencies.append(took)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker, s) for s in shares]:
            f.result(timeout=600)
    wall = time.perf_counter() - start
    return summarise(latencies, wall, sum(map(len, requests)))


# -- the server, in a second process -------------------------------------------------------
def start_server(
    embedder_cfg: dict[str, Any], server_cfg: dict[str, Any], workdir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    lines = ["[embedder]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in embedder_cfg.items() if v is not None]
    lines += ["[server]", f"port = {port}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in server_cfg.items()]
    toml = workdir / "promptembed.toml"
    toml.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log = (workdir / "server.log").open("wb")
    cmd = [sys.executable, "-c", "from promptembed.cli import app; app()", "serve"]
    proc = subprocess.Popen([*cmd, "--config", str(toml)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(workdir / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError("server did not become healthy in 300 s")


async def drive(
    base: str, requests: list[list[str]], concurrency: int
) -> tuple[dict[str, float], list[np.ndarray]]:
    """``concurrency`` asyncio clients sending their share of ``requests`` back to back."""
    import httpx

    latencies: list[float] = []
    vectors: list[np.ndarray] = [np.empty(0)] * len(requests)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:

        async def worker(k: int) -> None:
            for i in range(k, len(requests), concurrency):
                body = {"input": requests[i], "model": "bench", "encoding_format": "base64"}
                t0 = time.perf_counter()
                r = await client.post("/v1/embeddings", json=body)
                took = time.perf_counter() - t0
                r.raise_for_status()
                latencies.append(took)
                vectors[i] = np.array(
                    [np.frombuffer(_b64(d["embedding"]), dtype="<f4") for d in r.json()["data"]]
                )

        await client.post("/v1/embeddings", json={"input": requests[0]})  # warm connection
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(k) for k in range(concurrency))), 900)
        wall = time.perf_counter() - start
    return summarise(latencies, wall, sum(map(len, requests))), vectors


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def health(base: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{base}/health", timeout=10).json()


# -- main ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--template", default="ke")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--concurrency", default="1,4,16,32")
    parser.add_argument("--requests", type=int, default=64, help="Requests per level.")
    parser.add_argument("--inputs", type=int, default=4, help="Texts per request.")
    parser.add_argument("--max-batch-inputs", type=int, default=256)
    parser.add_argument("--max-batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "server-load.json")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    n_texts = args.requests * args.inputs
    texts = load_texts(n_texts)
    requests = [texts[i : i + args.inputs] for i in range(0, n_texts, args.inputs)]
    embedder_cfg = {
        "model": args.model,
        "template": args.template,
        "device": args.device,
        "dtype": args.dtype,
    }

    import torch

    from promptembed import PromptEmbedder

    embedder = PromptEmbedder(**embedder_cfg)
    embedder.embed(requests[0])  # warm-up
    reference = [embedder.embed(r) for r in requests]
    direct_seq = run_direct(embedder, requests, 1)
    direct = {c: direct_seq if c == 1 else run_direct(embedder, requests, c) for c in levels}
    device = str(embedder.device)
    del embedder
    gc.collect()

    server_cfg = {
        "max_batch_inputs": args.max_batch_inputs,
        "max_batch_wait_ms": args.max_batch_wait_ms,
        "max_queued_inputs": max(8192, n_texts),
        "log_level": "warning",
    }
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(embedder_cfg, server_cfg, Path(tmp))
        try:
            for c in levels:
                before = health(base)
                served, vectors = asyncio.run(drive(base, requests, c))
                after = health(base)
                batches = after["batches"] - before["batches"]
                cosine = min(
                    float(np.min(np.sum(v * r, axis=1))) for v, r in zip(vectors, reference)
                )
                d = direct[c]
                results.append(
                    {
                        "concurrency": c,
                        "server": served,
                        "direct_same_concurrency": d,
                        "mean_batch_texts": (after["batched_inputs"] - before["batched_inputs"])
                        / max(batches, 1),
                        "min_cosine_vs_direct": cosine,
                        "ratios_vs_direct_seq": {
                            "throughput": served["throughput_texts_per_s"]
                            / direct_seq["throughput_texts_per_s"],
                            "p50": served["p50_ms"] / direct_seq["p50_ms"],
                            "p99": served["p99_ms"] / direct_seq["p99_ms"],
                        },
                        "ratios_vs_direct_same_concurrency": {
                            "throughput": served["throughput_texts_per_s"]
                            / d["throughput_texts_per_s"],
                            "p50": served["p50_ms"] / d["p50_ms"],
                            "p99": served["p99_ms"] / d["p99_ms"],
                        },
                    }
                )
                print(f"concurrency {c}: done", file=sys.stderr)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()

    report = {
        "benchmark": "server load test (loopback, second process)",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": args.model,
        "template": args.template,
        "device": device,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "requests_per_level": args.requests,
        "texts_per_request": args.inputs,
        "server": server_cfg,
        "direct_seq": direct_seq,
        "levels": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(
        f"{args.model} ({args.template}) on {device}; {args.requests} requests x {args.inputs} "
        f"texts per level; direct-seq {direct_seq['throughput_texts_per_s']:.1f} texts/s, "
        f"p50 {direct_seq['p50_ms']:.1f} ms, p99 {direct_seq['p99_ms']:.1f} ms"
    )
    head = (
        f"{'c':>3} {'texts/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6} "
        f"{'xput/seq':>9} {'p50/seq':>8} {'p99/seq':>8} {'xput/dc':>8} {'p50/dc':>7} "
        f"{'p99/dc':>7} {'cos':>7}"
    )
    print(head)
    for r in results:
        s, a, b = r["server"], r["ratios_vs_direct_seq"], r["ratios_vs_direct_same_concurrency"]
        print(
            f"{r['concurrency']:>3} {s['throughput_texts_per_s']:>8.1f} {s['p50_ms']:>8.1f} "
            f"{s['p99_ms']:>8.1f} {r['mean_batch_texts']:>6.1f} {a['throughput']:>9.2f} "
            f"{a['p50']:>8.2f} {a['p99']:>8.2f} {b['throughput']:>8.2f} {b['p50']:>7.2f} "
            f"{b['p99']:>7.2f} {r['min_cosine_vs_direct']:>7.4f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

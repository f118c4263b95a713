"""Client mode: ``promptembed query`` and 4 processes, with and without a shared server.

(a) Latency of ``promptembed query`` as a user runs it (a fresh process each time,
    subprocess wall time, ``--repeats`` runs, median): in process (each run loads the
    model) against client mode (``[embedder] server``: each run asks a running
    ``promptembed serve``). Both query the same store, built once through the server.
(b) Throughput of ``--procs`` processes started together, each embedding the same
    ``--texts`` STS-B sentences as documents: sharing one server (client mode) against
    each loading the model itself. Wall time from the first start to the last exit.

Every timing records the 1-minute load average (``os.getloadavg()``) taken just before
it: on a shared machine it says how much the numbers are worth. The server's own start
is timed too but is not part of (a) or (b): it is paid once. The result is one JSON
file (``--out``) and ratios on stdout.

Example (from the repository root):
    python -m benchmarks.speed.bench_client_mode --model smollm2-135m --template ke \
        --repeats 3 --procs 4 --texts 64 \
        --out benchmarks/speed/results/client-mode-smollm2-135m.json

"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import free_port, results_dir
from benchmarks.speed.bench_server import load_texts

RESULTS = results_dir(__file__)
CLI = [sys.executable, "-c", "from promptembed.cli import app; app()"]
QUERY = "A man is playing a guitar."
KEY = "bench-client-mode"
# One worker of (b): embeds the texts file with the config's embedder (remote or loaded).
WORKER = """
import json, sys
from promptembed.config import load_config
from promptembed.registry import shared_embedder
cfg = load_config(sys.argv[1])
texts = json.loads(open(sys.argv[2], encoding="utf-8").read())
vectors = shared_embedder(cfg.embedder).embed(texts, kind="document")
print(type(shared_embedder(cfg.embedder)).__name__, vectors.shape[0])
"""


def write_config(path: Path, embedder: dict[str, Any], store: Path, port: int) -> Path:
    lines = ["[embedder]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in embedder.items() if v is not None]
    lines += ["[store]", f"path = {json.dumps(str(store))}", 'collection = "bench"']
    lines += ["[server]", f"port = {port}", 'log_level = "warning"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def env() -> dict[str, str]:
    return {**os.environ, "PROMPTEMBED_API_KEY": KEY, "TRANSFORMERS_VERBOSITY": "error"}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def timed(cmds: list[list[str]]) -> dict[str, Any]:
    """Start ``cmds`` together; wall time until the last exits, and the load before."""
    before = load()
    start = time.perf_counter()
    procs = [
        subprocess.Popen(c, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in cmds
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    wall = time.perf_counter() - start
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"{p.args[-1]!r} failed ({p.returncode}): {err[-2000:]}")
    return {"wall_s": round(wall, 3), "load_1m_before": before, "stdout": outs[0][0][-300:]}


def start_server(config: Path, port: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    import httpx

    before, start = load(), time.perf_counter()
    proc = subprocess.Popen(
        [*CLI, "serve", "--config", str(config)],
        env=env(),
        stdout=(config.parent / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (config.parent / "server.log").read_text()[-2000:]
            raise RuntimeError(f"promptembed serve exited during start-up: {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                took = round(time.perf_counter() - start, 3)
                return proc, {"wall_s": took, "load_1m_before": before}
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("promptembed serve did not answer /health in 600 s")


def query_latency(config: Path, repeats: int) -> dict[str, Any]:
    """``promptembed query`` in a fresh process, ``repeats`` times, one after another."""
    command = [*CLI, "query", "-q", "-k", "3", "--config", str(config), QUERY]
    runs = [timed([command]) for _ in range(repeats)]
    return {
        "median_s": round(statistics.median(r["wall_s"] for r in runs), 3),
        "runs": [{k: r[k] for k in ("wall_s", "load_1m_before")} for r in runs],
    }


def throughput(config: Path, texts_file: Path, procs: int, n: int) -> dict[str, Any]:
    run = timed([[sys.executable, "-c", WORKER, str(config), str(texts_file)]] * procs)
    return {
        "procs": procs,
        "texts_per_proc": n,
        "wall_s": run["wall_s"],
        "texts_per_s": round(procs * n / run["wall_s"], 2),
        "load_1m_before": run["load_1m_before"],
        "worker_said": run["stdout"].strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="Alias, hub id or directory.")
    parser.add_argument("--template", default="ke")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each query (median).")
    parser.add_argument("--procs", type=int, default=4, help="Processes in (b).")
    parser.add_argument("--texts", type=int, default=64, help="Texts each process embeds.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or RESULTS / f"client-mode-{Path(args.model).name}.json"
    embedder = {"model": args.model, "template": args.template, "device": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        root, port = Path(tmp), free_port()
        server = f"http://127.0.0.1:{port}"
        local = write_config(root / "local.toml", embedder, root / "db", port)
        client = write_config(
            root / "client.toml", {**embedder, "server": server}, root / "db", port
        )
        texts = load_texts(max(args.texts, 32))
        corpus = root / "corpus"
        corpus.mkdir()
        for i, text in enumerate(texts[:32]):
            (corpus / f"s{i}.txt").write_text(text, encoding="utf-8")
        (root / "texts.json").write_text(json.dumps(texts[: args.texts]), encoding="utf-8")
        proc, started = start_server(local, port)
        try:
            timed([[*CLI, "index", "-q", str(corpus), "--config", str(client)]])  # the store
            through = query_latency(client, args.repeats)
            shared = throughput(client, root / "texts.json", args.procs, args.texts)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        in_process = query_latency(local, args.repeats)
        each_loads = throughput(local, root / "texts.json", args.procs, args.texts)
    import torch

    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "model": args.model,
        "template": args.template,
        "command": " ".join(["python -m benchmarks.speed.bench_client_mode", *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), float32",
        "server_start": started,
        "query_in_process": in_process,
        "query_through_server": through,
        "query_speedup": round(in_process["median_s"] / through["median_s"], 2),
        "procs_sharing_server": shared,
        "procs_each_loading": each_loads,
        "throughput_ratio_shared_over_each": round(
            shared["texts_per_s"] / each_loads["texts_per_s"], 2
        ),
    }
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(
        f"promptembed query: {in_process['median_s']:.2f} s in process, "
        f"{through['median_s']:.2f} s through the server ({result['query_speedup']}x); "
        f"{args.procs} processes: {shared['texts_per_s']} texts/s sharing a server, "
        f"{each_loads['texts_per_s']} each loading ({result['throughput_ratio_shared_over_each']}x)"
    )


if __name__ == "__main__":
    main()

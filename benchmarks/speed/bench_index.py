"""`promptembed index` against one bare `embed` call over the same chunks, as a ratio.

Writes ``--files`` small text files (a few STS-B train sentences each), loads one
:class:`promptembed.PromptEmbedder`, and in the same process, interleaved:

* ``embed``: ``embedder.embed(texts)``, one call over every chunk's text (what the
  indexer has to compute at least);
* ``index``: :func:`promptembed.ingest.pipeline.index_paths` over the files into a fresh
  embedded Chroma store (read, decode, chunk, embed in batches across files, upsert).

It prints the median of each and ``index / embed`` (target: at most 1.3), in wall
time and in this process's CPU time (steadier on a shared machine). Then it
re-indexes the unchanged files without passing an embedder and prints how long that
took and whether the model was loaded (it must not be).

Example (from the repository root):
    nice -n 10 python -m benchmarks.speed.bench_index --model smollm2-135m --files 200 \
        --out benchmarks/speed/results/index-smollm2-135m.json

"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import STSB
from promptembed import PromptEmbedder
from promptembed.config import load_config
from promptembed.ingest.pipeline import index_paths
from promptembed.ingest.planning import plan_corpus

DATA = STSB / "stsb-en-train.csv"


def write_files(folder: Path, n: int, per_file: int, data: Path) -> None:
    """``n`` text files of ``per_file`` distinct STS-B train sentences each."""
    with data.open(encoding="utf-8") as f:
        sentences = list(dict.fromkeys(row[0] for row in csv.reader(f)))
    folder.mkdir(parents=True)
    for i in range(n):
        chosen = sentences[i * per_file : (i + 1) * per_file]
        (folder / f"note{i:04d}.txt").write_text(" ".join(chosen) + "\n", encoding="utf-8")


def timed(fn):
    """``(wall seconds, CPU seconds of this process's threads, result)``.

    CPU time is the steadier measure on a shared machine: other jobs stretch wall time
    but not the work done here (Chroma's and torch's threads included).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _ratio(times: dict[str, list[float]]) -> float:
    return round(statistics.median(times["index"]) / statistics.median(times["embed"]), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--template", default="ke")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--sentences", type=int, default=3, help="sentences per file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        write_files(corpus, args.files, args.sentences, args.data)
        embedder = PromptEmbedder(args.model, template=args.template, device="cpu")
        config = {"embedder": embedder.config.model_dump(), "index": {}}
        texts = [c.text for c in plan_corpus([corpus], root=root)]
        embedder.embed(texts[:8])  # warm-up: first-call allocations are not either side's
        wall: dict[str, list[float]] = {"embed": [], "index": []}
        cpu: dict[str, list[float]] = {"embed": [], "index": []}
        for rep in range(args.repeats):
            cfg = load_config({**config, "store": {"path": str(root / f"db{rep}")}})
            sides = [
                ("embed", lambda: embedder.embed(texts)),
                ("index", lambda cfg=cfg: index_paths([corpus], cfg, embedder=embedder)),
            ]
            for name, fn in sides if rep % 2 == 0 else sides[::-1]:  # alternate the order
                wall_s, cpu_s, out = timed(fn)
                if name == "index":
                    assert out.embedded == len(texts), (out.embedded, len(texts))
                wall[name].append(wall_s)
                cpu[name].append(cpu_s)
                print(f"rep {rep} {name}: {wall_s:.1f}s wall, {cpu_s:.1f}s CPU", flush=True)
        # The no-change re-index, as a user runs it: no embedder passed in.
        last = load_config({**config, "store": {"path": str(root / f"db{args.repeats - 1}")}})
        reindex_s, _, again = timed(lambda: index_paths([corpus], last))
    result = {
        "model": args.model,
        "template": args.template,
        "files": args.files,
        "chunks": len(texts),
        "embed_wall_s": [round(x, 2) for x in wall["embed"]],
        "index_wall_s": [round(x, 2) for x in wall["index"]],
        "embed_cpu_s": [round(x, 2) for x in cpu["embed"]],
        "index_cpu_s": [round(x, 2) for x in cpu["index"]],
        "ratio_index_over_embed_wall": _ratio(wall),
        "ratio_index_over_embed_cpu": _ratio(cpu),
        "reindex_unchanged_s": round(reindex_s, 3),
        "reindex_embedded": again.embedded,
        "reindex_loaded_model": again.model_loaded,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, float32",
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

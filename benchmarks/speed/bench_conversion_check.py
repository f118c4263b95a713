"""Start-up cost of verifying the GGUF conversion cache, against the load it guards.

Every start that finds ``<cache>/converted/<model>`` re-hashes each of its files
(SHA-256, all bytes, so one flipped byte is caught) before loading. This script times,
interleaved in one process, ``verify_conversion`` on the cached copy and a full
``PromptEmbedder(model, device="cpu")`` start (which includes that check), and prints
the check's share of the start.

It prints one JSON line (no file is written).

Example (from the repository root):
    python -m benchmarks.speed.bench_conversion_check --model gemma-3-270m --repeats 3

"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from promptembed import PromptEmbedder
from promptembed.engine.loading import default_cache_dir, verify_conversion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    (target,) = sorted((default_cache_dir() / "converted").glob(f"{args.model}-*[!.]*"))[-1:]
    size = sum(f.stat().st_size for f in target.iterdir() if f.is_file())
    PromptEmbedder(args.model, device="cpu")  # warm the page cache; records checksums once
    checks, starts = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        assert verify_conversion(target) is None, "the cached conversion is damaged"
        checks.append(time.perf_counter() - t)
        t = time.perf_counter()
        PromptEmbedder(args.model, device="cpu")
        starts.append(time.perf_counter() - t)
    check, start = statistics.median(checks), statistics.median(starts)
    print(
        json.dumps(
            {
                "model": args.model,
                "bytes_hashed": size,
                "check_s": round(check, 3),
                "start_s_incl_check": round(start, 3),
                "check_share_of_start": round(check / start, 3),
                "hash_gb_per_s": round(size / check / 1e9, 2),
                "repeats": args.repeats,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Cost per text of each booster II technique against the plain template, as ratios.

    OMP_NUM_THREADS=1 python -m benchmarks.speed.bench_boosters2 --model smollm2-135m --template ke

It prints one JSON line; ``RUNS=cost bash benchmarks/quality/boosters2.sh`` stores it as
``benchmarks/speed/results/boosters2-cost-smollm2-ke.json``.

Every variant shares one loaded model; the variants are timed interleaved, round after
round, on the same STS-B dev sentences, so machine noise hits them alike. The ratio is
the median time of a variant over the median time of the plain template (1.00 = free).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from benchmarks.common import STSB
from promptembed import PromptEmbedder
from promptembed.evaluation.data import read_sts

VARIANTS = {
    "plain": {},
    "icl-1": {"demonstrations": [["A dog rides a skateboard.", "Skateboarding"]]},
    "tp-1-4": {"token_prepending": (1, 4)},
    "contrastive-8": {"contrastive": (8, 1.0)},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--template", default="ke")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pairs = read_sts(STSB / "stsb-en-dev.csv")
    texts = sorted({s for a, b, _ in pairs for s in (a, b)})[: args.n]
    base = PromptEmbedder(args.model, template=args.template, device="cpu")
    embedders = {
        name: PromptEmbedder.from_model(base.model, base.tokenizer, template=args.template, **v)
        for name, v in VARIANTS.items()
    }
    times: dict[str, list[float]] = {name: [] for name in embedders}
    for emb in embedders.values():
        emb.embed(texts[:8])  # warm-up: prefix caches, allocator
    for _ in range(args.rounds):
        for name, emb in embedders.items():
            start = time.perf_counter()
            emb.embed(texts)
            times[name].append(time.perf_counter() - start)
    plain = statistics.median(times["plain"])
    out = {
        "model": args.model,
        "template": args.template,
        "texts": len(texts),
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "seconds_per_text_plain": round(plain / len(texts), 4),
        "ratio_vs_plain": {n: round(statistics.median(t) / plain, 2) for n, t in times.items()},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

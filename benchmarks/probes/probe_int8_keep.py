"""Which decoder linear layers should int8 leave in float32? A cheap probe.

For each rule (a name test on a linear layer's path), build an int8 embedder whose
``quantize_`` call also skips the layers the rule names (torchao's ``quantize_`` is
wrapped for the build; the library is untouched), then let float32 and every rule take
turns on chunks of the first ``--n`` STS-B dev sentences in one process. Prints each
rule's mean / min cosine to float32 and its speed-up over float32.

It prints one JSON line.

Example (from the repository root):
    python -m benchmarks.probes.probe_int8_keep --model gemma-3-270m --template eol --n 200 \\
        >> benchmarks/probes/results/int8-keep-probe-gemma-3-270m-eol-n200.jsonl

"""

from __future__ import annotations

import argparse
import csv
import json
import time

import numpy as np

from benchmarks.common import STS_DEV, cosine_rows

RULES = {
    "none": lambda name: False,
    "down_proj": lambda name: name.rsplit(".", 1)[-1] == "down_proj",
}


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--template", default="eol")
    p.add_argument("--rules", nargs="+", default=["none", "down_proj"], choices=list(RULES))
    p.add_argument("--n", type=int, default=200, help="STS-B dev sentences")
    p.add_argument("--chunk", type=int, default=25)
    args = p.parse_args()
    import torch
    from torchao import quantization as torchao_quantization

    from promptembed import PromptEmbedder

    torch.set_num_threads(1)
    with STS_DEV.open(newline="") as f:
        texts = [row[0] for row in csv.reader(f)][: args.n]
    quantize = torchao_quantization.quantize_
    embedders = {"float32": PromptEmbedder(args.model, template=args.template, dtype="float32")}
    for rule in args.rules:

        def skipping(model, config, filter_fn, keep=RULES[rule], **kw):
            def only(module, fqn):
                return filter_fn(module, fqn) and not keep(fqn)

            return quantize(model, config, filter_fn=only, **kw)

        torchao_quantization.quantize_ = skipping
        try:
            embedders[rule] = PromptEmbedder(args.model, template=args.template, dtype="int8")
        finally:
            torchao_quantization.quantize_ = quantize
    names = list(embedders)
    seconds = dict.fromkeys(names, 0.0)
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for name in names:
        embedders[name].embed(texts[:4])  # warm-up
    chunks = [texts[i : i + args.chunk] for i in range(0, len(texts), args.chunk)]
    for turn, chunk in enumerate(chunks):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            t0 = time.perf_counter()
            vectors[name].append(embedders[name].embed(chunk))
            seconds[name] += time.perf_counter() - t0
    exact = np.concatenate(vectors["float32"])
    rows = {}
    for rule in args.rules:
        fast = np.concatenate(vectors[rule])
        cos = cosine_rows(fast, exact)
        rows[rule] = {
            "cosine_mean": round(float(cos.mean()), 5),
            "cosine_min": round(float(cos.min()), 5),
            "speedup_vs_float32": round(seconds["float32"] / seconds[rule], 3),
        }
    print(json.dumps({"model": args.model, "template": args.template, "n": len(texts)} | rows))


if __name__ == "__main__":
    main()

"""Does whitening (with reduction) beat centering? One template, vectors computed once.

    OMP_NUM_THREADS=1 python benchmarks/whitening_probe.py --model smollm2-135m --template ke
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from promptembed import PromptEmbedder
from promptembed.calibration import Calibration
from promptembed.evaluate import read_sts, read_texts, spearman


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--template", default="ke")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--limit", type=int, default=1000)
    args = parser.parse_args()
    data = "../shared/data/stsb"
    pairs = read_sts(f"{data}/stsb-{args.lang}-dev.csv")
    sample = read_texts([f"{data}/stsb-{args.lang}-train.csv"], limit=args.limit)
    emb = PromptEmbedder(args.model, template=args.template)
    sentences = sorted({s for a, b, _ in pairs for s in (a, b)})
    index = {s: i for i, s in enumerate(sentences)}
    dev, fit = emb.embed_raw(sentences), emb.embed_raw(sample)
    left = [index[a] for a, _, _ in pairs]
    right = [index[b] for _, b, _ in pairs]
    gold = [g for *_, g in pairs]

    def score(v: np.ndarray) -> float:
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        return round(spearman((v[left] * v[right]).sum(1).tolist(), gold), 2)

    rows = {"raw": score(dev), "center": score(Calibration.fit(fit).apply(dev))}
    for method in ("center", "whiten"):
        for dims in (32, 64, 128, 256):
            cal = Calibration.fit(fit, method=method, dims=dims)
            rows[f"{method}-{dims}"] = score(cal.apply(dev))
    print(json.dumps({"model": args.model, "template": args.template, "lang": args.lang,
                      "sample": len(sample), **rows}))


if __name__ == "__main__":
    main()

"""Raw (uncalibrated) STS Spearman of booster variants on 500 selection pairs of train.

    OMP_NUM_THREADS=1 python benchmarks/boosters2/probe.py smollm2-135m en ke [0,1,...]

The selection pairs are ``split_train``'s (seed 0, 1500 held out, first 500 scored);
variants: 0 plain, 1 one demonstration, 2 two demonstrations, 3 TP 1-4, 4 TP 1-99,
5 contrastive at block 8 with alpha 1.
One JSON line per variant.
"""

from __future__ import annotations

import json
import sys
import time

from promptembed import PromptEmbedder
from promptembed.evaluate import read_sts, spearman
from promptembed.tune import split_train

DEMOS = {
    "en": [
        ["A dog rides a skateboard.", "Skateboarding"],
        ["The man is peeling an apple.", "Apple"],
    ],
    "zh": [["那人正在吃披萨。", "披萨"], ["两只狗在草地上玩耍。", "玩耍"]],
}


def main() -> None:
    model, lang, template = sys.argv[1:4]
    _, sel = split_train(read_sts(f"../shared/data/stsb/stsb-{lang}-train.csv"))
    sel = sel[:500]
    sents = sorted({s for a, b, _ in sel for s in (a, b)})
    ix = {s: i for i, s in enumerate(sents)}
    left, right = [ix[a] for a, _, _ in sel], [ix[b] for _, b, _ in sel]
    gold = [g for *_, g in sel]
    demos = DEMOS[lang]
    variants = [
        {},
        {"demonstrations": demos[:1]},
        {"demonstrations": demos[:2]},
        {"token_prepending": (1, 4)},
        {"token_prepending": (1, 99)},
        {"contrastive": (8, 1.0)},
    ]
    chosen = sys.argv[4].split(",") if len(sys.argv) > 4 else range(len(variants))
    base = PromptEmbedder(model, template=template, device="cpu")
    for number in chosen:
        variant = variants[int(number)]
        start = time.time()
        emb = PromptEmbedder.from_model(base.model, base.tokenizer, template=template, **variant)
        x = emb.embed(sents)
        value = spearman((x[left] * x[right]).sum(1).tolist(), gold)
        row = {"model": model, "lang": lang, "template": template, **variant}
        row.update(selection500=round(value, 2), seconds=round(time.time() - start))
        print(json.dumps(row, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()

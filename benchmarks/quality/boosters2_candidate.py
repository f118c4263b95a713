"""Score one candidate config on the selection split, pick its calibration there, then dev once.

The lean path of `promptembed tune --train ... --dev ...` for one variant (what a busy
2-core machine allows): the base config's templates with the given booster fields are
embedded once on the 500 selection pairs and once on 500 fit-part sentences; every
calibration tune tries is scored on the selection pairs; the best is fitted, saved next
to ``--out`` and the written config is scored once on STS-B dev.

    OMP_NUM_THREADS=1 python -m benchmarks.quality.boosters2_candidate \\
        --base examples/configs/best-smollm2-en.toml --lang en \\
        --set 'demonstrations=[["A dog rides a skateboard.", "Skateboarding"]]' \\
        --out /tmp/cand/best-smollm2-en.toml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tomlkit

from benchmarks.common import STSB, StoredVectors
from promptembed import PromptEmbedder, load_config
from promptembed.engine.calibration import Calibration, fit_fields
from promptembed.evaluation import evaluate_sts, read_sts, split_train
from promptembed.evaluation.tuning import CALIBRATIONS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--lang", default="en")
    parser.add_argument("--set", action="append", default=[], help="field=JSON value")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--selection", type=int, default=500)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--no-dev", action="store_true")
    args = parser.parse_args()
    fields = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    cfg = load_config(args.base).embedder.model_copy(update={"calibration": None, **fields})
    cfg = type(cfg).model_validate(cfg.model_dump())  # validate the overrides
    fit, pairs = split_train(
        read_sts(STSB / f"stsb-{args.lang}-train.csv"), selection=args.selection
    )
    texts = sorted({s for a, b, _ in fit for s in (a, b)})
    picked = np.random.default_rng(0).permutation(len(texts))[: args.limit]
    sample = [texts[i] for i in sorted(picked.tolist())]
    emb = PromptEmbedder(config=cfg)
    sentences = sorted({s for a, b, _ in pairs for s in (a, b)})
    vectors, held = emb.embed_raw(sentences), emb.embed_raw(sample)

    def score(v: np.ndarray) -> float:
        return evaluate_sts(StoredVectors(sentences, v), pairs).spearman  # type: ignore[arg-type]

    rows = {"raw": score(vectors)}
    for label, method, dims in CALIBRATIONS:
        cal = Calibration.fit(held, method=method, dims=dims)  # type: ignore[arg-type]
        rows[label] = score(cal.apply(vectors))
    best = max(rows, key=lambda k: rows[k])
    out = {"config": str(args.out), "fields": fields, "selection": rows, "best": best}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = tomlkit.parse(args.base.read_text(encoding="utf-8"))
    for key, value in fields.items():
        doc["embedder"][key] = value
    doc["embedder"].pop("calibration", None)
    if best != "raw":
        method, dims = next((m, d) for label, m, d in CALIBRATIONS if label == best)
        cal = Calibration.fit(held, method=method, dims=dims, fitted_on=fit_fields(cfg))  # type: ignore[arg-type]
        doc["embedder"]["calibration"] = cal.save(args.out.parent).name
    args.out.write_text(tomlkit.dumps(doc), encoding="utf-8")
    if not args.no_dev:
        final = PromptEmbedder(config=load_config(args.out).embedder)
        dev = evaluate_sts(final, STSB / f"stsb-{args.lang}-dev.csv").spearman
        out["dev"] = round(dev, 2)
        out["difference"] = round(dev - rows[best], 2)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()

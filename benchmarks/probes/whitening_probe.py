"""Does whitening (with reduction) beat centering? Vectors are computed once per run.

    OMP_NUM_THREADS=1 python -m benchmarks.probes.whitening_probe --model smollm2-135m \\
        --template ke > benchmarks/probes/results/whitening-smollm2-ke.json
    python -m benchmarks.probes.whitening_probe --config examples/configs/best-smollm2-en.toml \\
        --write > benchmarks/probes/results/whitening-smollm2-en-best.json

With ``--config`` the config's embedder (an ensemble, say) is probed with its
calibration removed; ``--write`` saves the best calibration next to the config and
points the config at it (what ``promptembed calibrate --method M --dims K`` would do).
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
from promptembed.evaluation import evaluate_sts, read_sts, read_texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--template", default="ke")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    pairs = read_sts(STSB / f"stsb-{args.lang}-dev.csv")
    sample = read_texts([STSB / f"stsb-{args.lang}-train.csv"], limit=args.limit)
    if args.config:
        cfg = load_config(args.config).embedder.model_copy(update={"calibration": None})
        emb = PromptEmbedder(config=cfg)
    else:
        emb = PromptEmbedder(args.model, template=args.template)
    sentences = sorted({s for a, b, _ in pairs for s in (a, b)})
    dev, fit = emb.embed_raw(sentences), emb.embed_raw(sample)

    def score(v: np.ndarray) -> float:
        return evaluate_sts(StoredVectors(sentences, v), pairs).spearman  # type: ignore[arg-type]

    rows = {"raw": score(dev), "center": score(Calibration.fit(fit).apply(dev))}
    options: dict[str, tuple[str, int | None]] = {"center": ("center", None)}
    for method in ("center", "whiten"):
        for dims in (32, 64, 128, 256):
            cal = Calibration.fit(fit, method=method, dims=dims)
            rows[f"{method}-{dims}"] = score(cal.apply(dev))
            options[f"{method}-{dims}"] = (method, dims)
    best = max(options, key=lambda k: rows[k])
    out = {
        "model": emb.config.model,
        "template": emb.config.template,
        "lang": args.lang,
        "sample": len(sample),
        **rows,
        "best": best,
    }
    if args.write and args.config:
        method, dims = options[best]
        cal = Calibration.fit(
            fit,
            method=method,
            dims=dims,  # type: ignore[arg-type]
            fitted_on=fit_fields(emb.config),
        )
        path = cal.save(args.config.parent)
        doc = tomlkit.parse(args.config.read_text(encoding="utf-8"))
        doc["embedder"]["calibration"] = path.name
        args.config.write_text(tomlkit.dumps(doc), encoding="utf-8")
        out["written"] = path.name
    print(json.dumps(out))


if __name__ == "__main__":
    main()

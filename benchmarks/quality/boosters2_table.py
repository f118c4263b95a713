"""Boosters II table cells from `promptembed tune --train ... --json` outputs.

    python -m benchmarks.quality.boosters2_table benchmarks/quality/results/boosters2/tune-*.json

Each file holds tune's two JSON lines (summary, then every candidate best first). Per file
it prints the best selection score of each kind of candidate: no booster II (templates,
layers, calibrations, ensembles only), with demonstrations, with Token Prepending, with
contrastive prompting; and the winner with its dev score when tune scored dev.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KINDS = {
    "plain": lambda v: not v,
    "icl": lambda v: "demonstrations" in v,
    "tp": lambda v: "token_prepending" in v,
    "contrastive": lambda v: "contrastive" in v,
}


def label(candidate: dict[str, Any]) -> str:
    """``ke@-1 + cot@-2, whiten-128, ICL: sentence → word`` style description."""
    parts = [" + ".join(candidate["templates"])]
    if candidate["calibration"]:
        parts.append(candidate["calibration"])
    for key, value in candidate["variant"].items():
        if key == "demonstrations":
            parts.append(f"ICL: {'; '.join(f'{s} → {w}' for s, w in value)}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def cells(path: Path) -> dict[str, Any]:
    """The best candidate of each kind in one tune output, and the winner's dev score."""
    summary_line, rows_line = path.read_text(encoding="utf-8").strip().splitlines()[-2:]
    summary, rows = json.loads(summary_line), json.loads(rows_line)
    out: dict[str, Any] = {"file": path.name, "pairs": summary["pairs"]}
    for kind, wanted in KINDS.items():
        best = next((r for r in rows if wanted(r["variant"])), None)
        if best is not None:
            raw = next(r for r in rows if wanted(r["variant"]) and not r["calibrated"])
            out[kind] = {"selection": best["spearman"], "what": label(best)}
            out[kind + "_raw"] = {"selection": raw["spearman"], "what": label(raw)}
    out["winner"] = {"selection": summary["selection"], "what": label(rows[0])}
    if "dev" in summary:
        out["winner"].update(dev=summary["dev"], difference=summary["difference"])
    return out


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(json.dumps(cells(Path(name)), ensure_ascii=False, indent=1))

"""Reading evaluation data: STS pairs, BEIR folders, plain text lines."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass


def read_sts(path: str | Path) -> list[tuple[str, str, float]]:
    """Read an STS CSV of ``s1,s2,score`` rows (no header, stsb-multi-mt format).

    Raises:
        ValueError: On a row that is not two sentences and a number, naming its line.

    """
    rows: list[tuple[str, str, float]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.reader(fh), start=1):
            if not row:
                continue
            try:
                s1, s2, score = row
                rows.append((s1, s2, float(score)))
            except ValueError:
                if line == 1 and len(row) == 3:
                    continue  # a header line
                raise ValueError(f"{path}:{line}: expected s1,s2,score, got {row!r}") from None
    return rows


def read_beir(
    corpus: str | Path, queries: str | Path, qrels: str | Path
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """Read a BEIR corpus (``title`` + ``text``), queries and a qrels TSV."""
    docs: dict[str, str] = {}
    with open(corpus, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            docs[str(row["_id"])] = " ".join(p for p in (row.get("title"), row.get("text")) if p)
    judged: dict[str, dict[str, int]] = {}
    with open(qrels, encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 3 or not row[2].lstrip("-").isdigit():
                continue  # header
            judged.setdefault(row[0], {})[row[1]] = int(row[2])
    qs: dict[str, str] = {}
    with open(queries, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if str(row["_id"]) in judged:
                qs[str(row["_id"])] = row["text"]
    return docs, qs, judged


def read_texts(paths: Sequence[str | Path], limit: int | None = None, seed: int = 0) -> list[str]:
    """Distinct texts from sample files, for fitting a calibration.

    ``.csv`` files are read as STS pairs (both sentences), ``.jsonl`` as BEIR rows
    (title + text), anything else as one text per non-empty line. With ``limit``, a
    seeded random subset of that size is returned.
    """
    seen: dict[str, None] = {}
    for path in paths:
        suffix = Path(path).suffix
        if suffix == ".csv":
            items = [s for a, b, _ in read_sts(path) for s in (a, b)]
        elif suffix == ".jsonl":
            with open(path, encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
            items = [" ".join(p for p in (r.get("title"), r.get("text")) if p) for r in rows]
        else:
            items = [line.strip() for line in iter_lines(path)]
        seen.update(dict.fromkeys(t for t in items if t.strip()))
    texts = list(seen)
    if limit is not None and len(texts) > limit:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), limit, replace=False))]
    return texts


def iter_lines(path: str | Path) -> Iterable[str]:
    """Yield the lines of a text file without their newline (for streaming embeds)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield line.rstrip("\n")

"""Each packaged alias defaults to the template the docs' tables measure as its best."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptembed import EmbedderConfig
from promptembed.config.aliases import ALIASES, PAPER_TEMPLATE
from promptembed.templates import Template

ROOT = Path(__file__).resolve().parents[2]
ROWS = {"gemma-3-270m": "Gemma-3-270M", "smollm2-135m": "SmolLM2-135M"}


def sts_table() -> dict[str, dict[str, float]]:
    """The STS-B dev table of docs/evaluation.md: English row per model, score per template."""
    text = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")
    table = text.split("<!-- sts-table -->")[1].split("<!-- /sts-table -->")[0]
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in table.strip().splitlines()]
    header, rows = lines[0], lines[2:]
    return {
        row[0]: {
            name: float(v)
            for name, v in zip(header[2:], row[2:])
            if name in {"eol", "sth", "sum", "cot", "ke"}
        }
        for row in rows
        if row[1] == "en"
    }


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_the_document_default_is_the_best_sts_template(alias):
    scores = sts_table()[ROWS[alias]]
    assert ALIASES[alias].template == max(scores, key=scores.get)
    assert EmbedderConfig(model=alias).template == ALIASES[alias].template


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_the_query_default_is_the_best_measured_query_prompt(alias):
    grid = ROOT / "benchmarks" / "quality" / "results" / f"scifact-grid-{alias}.jsonl"
    doc = ALIASES[alias].template
    rows = [json.loads(line) for line in grid.read_text().splitlines() if line.strip()]
    plain = {
        r["query_template"]: r["ndcg@10"]
        for r in rows
        if r["template"] == doc
        and r["calibration"] == "none"
        and r["layer"] == Template.parse(doc).layer
    }
    best = max(plain, key=plain.get)
    assert ALIASES[alias].query_template == (None if best == doc else best)
    assert EmbedderConfig(model=alias).query_template == ALIASES[alias].query_template


def test_other_models_default_to_the_papers_template_and_explicit_choices_win():
    assert EmbedderConfig(model="someone/some-model").template == PAPER_TEMPLATE == "ke"
    assert EmbedderConfig(model="someone/some-model").query_template is None
    # A template the user sets is theirs: no alias query prompt is slipped in beside it.
    assert EmbedderConfig(model="gemma-3-270m", template="cot").query_template is None
    assert EmbedderConfig(model="gemma-3-270m", query_template="claim").template == "eol"


def test_a_config_copied_to_another_model_takes_that_models_defaults():
    from promptembed.cli.base import build_config

    gemma = build_config(None, model="gemma-3-270m").embedder
    assert (gemma.template, gemma.query_template) == ("eol", "query")
    smol = build_config(None, model="smollm2-135m").embedder
    assert (smol.template, smol.query_template) == ("ke", None)
    assert build_config(None, model="x/y").embedder.template == "ke"

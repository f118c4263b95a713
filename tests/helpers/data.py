"""Small documents, corpora and configs shared by the tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

DOCS = [
    "The cat sat on the mat.",
    "Stocks fell sharply on Monday.",
    "A man is playing a guitar.",
    "一个孩子在骑马。",
    "A child is riding a horse.",
]


# A tiny corpus for the lexical channel and retrieval evaluation (English and Chinese).
RETRIEVAL_DOCS = {
    "tea": "Green tea lowers blood pressure in adults.",
    "bees": "Honeybees dance to tell each other where the flowers are.",
    "tea-zh": "绿茶可以降低成年人的血压。",
    "tomato-zh": "番茄需要充足的阳光和水分。",
}


def store_config(model_dir: Path, db: Path, collection: str = "docs", **embedder) -> dict:
    return {
        "embedder": {"model": str(model_dir), "device": "cpu", **embedder},
        "store": {"path": str(db), "collection": collection},
    }


def write_corpus(root: Path) -> Path:
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "bees.md").write_text(
        "# Bees\n\nA forager bee dances to show where flowers are. The angle of the run "
        "points to the food. The length of the run tells the distance.\n\n## Scent\n\n"
        "Dancers carry the smell of the flowers and share drops of nectar with others.\n",
        encoding="utf-8",
    )
    (corpus / "bread.txt").write_text(
        "Feed the starter before mixing. Let the dough proof until it springs back "
        "slowly. Preheat the oven for thirty minutes and score the loaf before baking.",
        encoding="utf-8",
    )
    (corpus / "tea.md").write_text(
        "# 绿茶\n\n绿茶不需要发酵。泡绿茶的水温不宜太高，八十度左右最合适。", encoding="utf-8"
    )
    (corpus / "skip.json").write_text("{}", encoding="utf-8")
    return corpus


def rewrite_weights(model_dir: Path, seed: int) -> None:
    """Overwrite a saved model's weights in place with new random values."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    model.save_pretrained(model_dir)


CALIBRATION_SAMPLE = [
    f"sample {i} on {w}" for i, w in enumerate(["bees", "tax", "rain", "jazz"] * 5)
]


def calibration_file(model_dir: Path, directory: Path, method: str, **fields) -> str:
    """A calibration fitted for the ``eol`` template on ``model_dir``, saved in ``directory``."""
    from promptembed import PromptEmbedder
    from promptembed.engine.calibration import Calibration, fit_fields

    base = PromptEmbedder(str(model_dir), device="cpu", template="eol", **fields)
    cal = Calibration.fit(
        base.embed_raw(CALIBRATION_SAMPLE),
        method=method,
        dims=6,
        fitted_on=fit_fields(base.config),
    )
    return str(cal.save(directory))

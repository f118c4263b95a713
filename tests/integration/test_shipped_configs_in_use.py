"""Every shipped config works on every store path, not only in evaluation.

Each config under examples/configs is rebuilt on a tiny model with the same template
structure (ensembles, query template, layers, max_length) and a calibration of the same
method fitted for that model; then it is used through the CLI (index + query),
open_collection, open_vectorstore, open_index and the server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from promptembed import PromptEmbedder
from promptembed.cli import app
from promptembed.config import EmbedderConfig, load_config
from promptembed.engine.calibration import Calibration, fit_fields

pytest.importorskip("chromadb")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIGS = sorted((EXAMPLES / "configs").glob("*.toml"))
CORPUS = ["honeybees.md", "lighthouses.txt", "green_tea_zh.txt"]
runner = CliRunner()


def tiny_config(shipped: Path, model_dir: Path, folder: Path) -> Path:
    """The shipped config on the tiny model, with a calibration fitted for it, as TOML.

    Its ``[retrieval]`` table (hybrid mode, channels, fusion weights) is kept as shipped.
    """
    import tomlkit

    shipped_cfg = load_config(shipped)
    table = shipped_cfg.embedder.model_dump(exclude_defaults=True)
    shipped_cal = table.pop("calibration", None)
    table.update(model=str(model_dir), device="cpu")
    if table.get("max_length", 512) < 128:  # the tiny tokenizer spends more tokens on a prompt
        table["max_length"] = 128
    config = EmbedderConfig(**table)
    if shipped_cal is not None:
        shipped_cal = Calibration.load(shipped_cal)
        base = PromptEmbedder(config=config)
        texts = [f"sample {i} about {w}" for i, w in enumerate(["bees", "tea", "light"] * 8)]
        dims = None if shipped_cal.fitted_on.get("dims") is None else 8
        cal = Calibration.fit(
            base.embed_raw(texts),
            method=shipped_cal.method,
            dims=dims,
            fitted_on=fit_fields(config),
        )
        table["calibration"] = cal.save(folder).name
    doc = {
        "embedder": json.loads(json.dumps(table)),  # tuples as lists, as TOML holds them
        "store": {"path": "db", "collection": "docs"},
        "retrieval": shipped_cfg.retrieval.model_dump(exclude_defaults=True),
    }
    path = folder / "promptembed.toml"
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return path


@pytest.mark.parametrize("shipped", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_on_every_store_path(shipped, tmp_path, model_dirs):
    toml = tiny_config(shipped, model_dirs["llama"], tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in CORPUS:
        (corpus / name).write_text((EXAMPLES / "corpus" / name).read_text("utf-8"), "utf-8")
    probe = "How do lighthouse keepers keep the light burning?"

    done = runner.invoke(app, ["index", str(corpus), "--config", str(toml)])
    assert done.exit_code == 0, done.output
    out = runner.invoke(app, ["query", probe, "-k", "2", "--config", str(toml), "--json"])
    assert out.exit_code == 0, out.output
    hits = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(hits) == 2
    # The CLI answers with the configured mode: the core's ranking, fused when hybrid.
    import promptembed
    from promptembed.store.reading import query

    assert [h["id"] for h in hits] == [h.id for h in promptembed.retrieve(toml, probe, 2)]
    # Every dense path must answer the same (a random model ranks anyhow).
    top = query(probe, toml, k=1)[0].id

    from promptembed.chroma import open_collection

    collection = open_collection(toml)
    assert collection.query(query_texts=[probe], n_results=1)["ids"][0] == [top]

    from promptembed.langchain import open_vectorstore

    store = open_vectorstore(toml)
    assert store.similarity_search(probe, k=1)[0].id == top

    from promptembed.llama_index import open_index

    index = open_index(toml)
    assert index.as_retriever(similarity_top_k=1).retrieve(probe)[0].node.node_id == top

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from promptembed.server import create_app

    reference = PromptEmbedder(config=collection._embedding_function.config)
    with TestClient(create_app(toml)) as client:
        reply = client.post("/v1/embeddings", json={"input": ["tea", "bees"], "model": "x"})
    assert reply.status_code == 200, reply.text
    served = np.array([d["embedding"] for d in reply.json()["data"]])
    np.testing.assert_allclose(served, reference.embed(["tea", "bees"]), atol=1e-5)

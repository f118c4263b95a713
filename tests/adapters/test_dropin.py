"""The drop-in paths: stores built by the user with promptembed's adapters, real Chroma.

A str is never split into letters, importing any adapter registers the Chroma function,
and a collection and its config can move (with its calibration). The guard on these paths
(refusal, adoption of drop-in stores) is tested in ``tests/store/test_guard.py``.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

chromadb = pytest.importorskip("chromadb")
pytest.importorskip("langchain_chroma")
pytest.importorskip("llama_index.vector_stores.chroma")

from promptembed.chroma import open_collection  # noqa: E402
from promptembed.langchain import PromptEmbeddings  # noqa: E402
from promptembed.llama_index import PromptEmbedding  # noqa: E402
from promptembed.store.function import PromptEmbeddingFunction  # noqa: E402
from tests.helpers import DOCS, run_python  # noqa: E402


@pytest.fixture(scope="module")
def ke(embedder_factory):
    return embedder_factory("llama")


def test_a_str_is_not_split_into_letters(ke):
    ef = PromptEmbeddingFunction(embedder=ke)
    lc = PromptEmbeddings.from_embedder(ke)
    li = PromptEmbedding.from_embedder(ke)
    for call in (lc.embed_documents, li.get_text_embedding_batch, ef):
        for bad in ("abc", b"abc", None):
            with pytest.raises(TypeError):
                call(bad)
    assert len(lc.embed_documents(["abc"])) == 1


@pytest.mark.procs
@pytest.mark.parametrize("module", ["promptembed.langchain", "promptembed.llama_index"])
def test_importing_any_adapter_registers_the_chroma_function(module):
    code = f"""
import {module}
from chromadb.utils.embedding_functions import known_embedding_functions
print("promptembed" in known_embedding_functions)
"""
    assert run_python(code).stdout.strip().endswith("True")


@pytest.mark.procs
def test_collection_and_config_move_to_another_directory(tmp_path, model_dirs, ke):
    from promptembed.engine.calibration import Calibration, fit_fields

    home = tmp_path / "project"
    cal = Calibration.fit(ke.embed_raw(DOCS * 2), fitted_on=fit_fields(ke.config)).save(home)
    (home / "promptembed.toml").write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        f'calibration = "{cal.name}"\n[store]\npath = "db"\ncollection = "docs"\n',
        encoding="utf-8",
    )
    col = open_collection(home / "promptembed.toml")
    col.add(ids=[f"d{i}" for i in range(len(DOCS))], documents=DOCS)
    before = col.query(query_texts=["a horse"], n_results=3)
    stored = col.configuration_json["embedding_function"]["config"]
    assert str(tmp_path) not in json.dumps(stored)  # no machine path is persisted
    del col

    moved = tmp_path / "elsewhere" / "project"
    shutil.copytree(home, moved)
    shutil.rmtree(home)
    after = open_collection(moved / "promptembed.toml").query(query_texts=["a horse"], n_results=3)
    assert after["ids"] == before["ids"]
    np.testing.assert_allclose(after["distances"], before["distances"], atol=1e-6)

    # Chroma rebuilds the function in a fresh process: found on the search path.
    code = f"""
import json, chromadb, promptembed.chroma
col = chromadb.PersistentClient({str(moved / "db")!r}).get_collection("docs")
print(json.dumps(col.query(query_texts=["a horse"], n_results=3)["ids"]))
"""
    out = run_python(code, env={"PROMPTEMBED_CALIBRATION_PATH": str(moved)})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == before["ids"]


def test_missing_calibration_names_its_hash_and_where_it_looked(tmp_path, model_dirs, ke):
    from promptembed.config import load_config
    from promptembed.engine.calibration import Calibration, fit_fields

    cal = Calibration.fit(ke.embed_raw(DOCS * 2), fitted_on=fit_fields(ke.config))
    name = cal.save(tmp_path / "elsewhere").name
    toml = tmp_path / "promptembed.toml"
    toml.write_text(f'[embedder]\ncalibration = "{name}"\n', encoding="utf-8")
    with pytest.raises(FileNotFoundError) as info:
        load_config(toml)
    message = str(info.value)
    assert name.removeprefix("calibration-").removesuffix(".npz") in message
    assert str(tmp_path) in message and "PROMPTEMBED_CALIBRATION_PATH" in message

"""A config the store or the index cannot take is refused up front: exit 2, one line naming the
field and the valid values, and nothing created (no database, lock file or lexical folder)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from promptembed.cli import app
from tests.helpers import one_line_error

runner = CliRunner()

# (what is wrong, extra TOML, words the one line must contain)
BAD_CONFIGS = {
    "collection with spaces": ('[store]\npath = "db"\ncollection = "a b c"\n', "store.collection"),
    "collection escaping": ('[store]\npath = "db"\ncollection = "../../escape"\n', "'..'"),
    "collection with a slash": ('[store]\npath = "db"\ncollection = "abc/def"\n', "'abc/def'"),
    "unknown stemmer": (
        '[store]\npath = "db"\ncollection = "docs"\n[retrieval]\nmode = "hybrid"\n'
        'stemmer = "klingon"\n',
        "valid: arabic",
    ),
    "overlap beyond size": (
        '[store]\npath = "db"\ncollection = "docs"\n[index]\nchunk_size = 32\n'
        "chunk_overlap = 100\n",
        "valid overlaps are 0..31",
    ),
    "nan weight": (
        '[store]\npath = "db"\ncollection = "docs"\n[retrieval]\nmode = "hybrid"\n'
        "weights = { dense = nan, bm25 = 0.7 }\n",
        "retrieval.weights.dense",
    ),
    "inf weight": (
        '[store]\npath = "db"\ncollection = "docs"\n[retrieval]\nmode = "hybrid"\n'
        "weights = { dense = 0.3, bm25 = inf }\n",
        "finite number",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("command", ["index", "query"])
def test_a_refused_config_creates_nothing(tmp_path, model_dirs, case, command):
    extra, words = BAD_CONFIGS[case]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Bees make honey.", encoding="utf-8")
    config = tmp_path / "promptembed.toml"
    config.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n' + extra
    )
    args = ["index", str(corpus)] if command == "index" else ["query", "honey"]
    line = one_line_error(runner.invoke(app, [*args, "--config", str(config)]))
    assert words in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "promptembed.toml"]


def test_a_store_path_that_is_a_file_is_one_line(tmp_path, model_dirs):
    (tmp_path / "db").write_text("not a folder")
    config = tmp_path / "promptembed.toml"
    config.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        '[store]\npath = "db"\ncollection = "docs"\n'
    )
    for args in (["query", "honey"], ["index", str(tmp_path / "db")]):
        line = one_line_error(runner.invoke(app, [*args, "--config", str(config)]))
        assert "store.path" in line and "is not a directory" in line
    assert (tmp_path / "db").read_text() == "not a folder"


# Refused while the model loads: before, each left db/chroma.sqlite3 and the lock behind.
MODEL_REFUSALS = {
    "layer": ("layer = 1000\n", "layer"),
    "max_length": ("max_length = 8\n", "max_length"),
    "contrastive block": ("contrastive = [1000, 1.0]\n", "contrastive"),
    "token_prepending": ("token_prepending = [1, 1000]\n", "token_prepending"),
    "attn_implementation": ('model_kwargs = { attn_implementation = "bogus" }\n', "bogus"),
    "embedding_cache is a file": ('embedding_cache = "afile"\n', "afile"),
}


@pytest.mark.parametrize("case", [*sorted(MODEL_REFUSALS), "missing folder", "empty folder"])
def test_a_config_the_model_refuses_creates_no_store(tmp_path, model_dirs, case):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Bees make honey.", encoding="utf-8")
    (tmp_path / "afile").write_text("x")
    model = model_dirs["llama"].as_posix()
    extra, words = MODEL_REFUSALS.get(case, ("", "model"))
    if case == "missing folder":
        model = (tmp_path / "no-such-model").as_posix()
    elif case == "empty folder":
        (tmp_path / "empty-model").mkdir()
        model = (tmp_path / "empty-model").as_posix()
    config = tmp_path / "promptembed.toml"
    config.write_text(
        f'[embedder]\nmodel = "{model}"\ndevice = "cpu"\n{extra}'
        '[store]\npath = "db"\ncollection = "docs"\n'
    )
    result = runner.invoke(app, ["index", str(corpus), "--config", str(config)])
    line = one_line_error(result)
    assert words in line
    assert not (tmp_path / "db").exists(), sorted(p.name for p in (tmp_path / "db").iterdir())

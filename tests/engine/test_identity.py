"""One definition of a vector's identity, and every consumer agreeing with it."""

from __future__ import annotations

import json
import shutil

import pytest

from promptembed import PromptEmbedder
from promptembed.config import EmbedderConfig
from promptembed.engine.calibration import Calibration, fit_fields
from promptembed.identity import (
    CALIBRATION_FIELD,
    FIT_FIELDS,
    PRECISION_FIELD,
    RUNTIME_FIELDS,
    VECTOR_FIELDS,
    VectorIdentity,
    of_config,
    of_embedder,
    stored_fields,
)
from tests.helpers import rewrite_weights

# A value for each field that differs from its default (and is valid without loading).
CHANGED = {
    "model": "smollm2-135m",
    "gguf_file": "x.gguf",
    "template": "eol",
    "query_template": "query",
    "layer": -3,
    "pooling": "mean",
    "normalize_text": False,
    "normalize_embeddings": False,
    "max_length": 64,
    "device": "cpu",
    "dtype": "bfloat16",
    "batch_size": 3,
    "max_batch_tokens": 128,
    "replicas": 2,
    "prefix_cache": False,
    "trust_remote_code": True,
    "cache_dir": "/tmp/elsewhere",
    "show_progress": True,
    "embedding_cache": "/tmp/cache",
    "revision": "v2",
    "model_kwargs": {"attn_implementation": "eager"},
    "token_env": "MY_TOKEN",
    "device_map": "auto",
    "demonstrations": [("A jockey riding a horse.", "Equestrian")],
    "token_prepending": (1, 3),
    "contrastive": (2, 1.0),
    "server": "http://127.0.0.1:9",
    "server_api_key_env": "OTHER_KEY",
}


def test_every_config_field_is_on_exactly_one_side():
    vector = {*VECTOR_FIELDS, CALIBRATION_FIELD, PRECISION_FIELD}
    runtime = set(RUNTIME_FIELDS)
    assert not vector & runtime
    # A field added to EmbedderConfig must be classified here (and in identity.py).
    assert vector | runtime == set(EmbedderConfig.model_fields)
    assert set(FIT_FIELDS) <= set(VECTOR_FIELDS)
    assert {"max_length", "query_template"} <= set(FIT_FIELDS)


@pytest.mark.parametrize("name", sorted(set(EmbedderConfig.model_fields) - {CALIBRATION_FIELD}))
def test_each_field_changes_the_identity_iff_it_shapes_vectors(name):
    # Templates pinned: an alias's default templates follow the model (config/aliases.py),
    # so without them a change of model would also change the templates.
    pinned = {"template": "ke", "query_template": None}
    base = of_config(EmbedderConfig(**pinned))
    changed = of_config(EmbedderConfig(**{**pinned, name: CHANGED[name]}))
    diff = base.differences(changed)
    if name in VECTOR_FIELDS:
        assert diff == [name]
    elif name == PRECISION_FIELD:
        # "auto" is resolved at loading: a config alone cannot tell, a record can.
        assert changed.precision == "bfloat16" and diff == []
    else:
        assert diff == [] and base.record() == changed.record()


def test_precision_compares_by_class_but_keys_exactly():
    fp32 = VectorIdentity({"model": "m"}, None, "w", "float32")
    bf16 = VectorIdentity({"model": "m"}, None, "w", "bfloat16")
    int8 = VectorIdentity({"model": "m"}, None, "w", "int8")
    assert fp32.differences(bf16) == []  # an index built in bf16 on GPU, queried on CPU
    assert fp32.differences(int8) == ["precision"]
    assert fp32.key() != bf16.key()  # the embedding cache never serves bf16 for fp32


def test_the_model_source_is_compared_only_while_the_weights_are_unknown():
    here = VectorIdentity({"model": "/data/models/m", "gguf_file": None}, None, "w", None)
    there = VectorIdentity({"model": "/opt/m", "gguf_file": None}, None, "w", None)
    other = VectorIdentity({"model": "/opt/m", "gguf_file": None}, None, "v", None)
    assert here.differences(there) == []  # the same content, loaded from elsewhere
    assert here.differences(other) == ["model", "weights"]
    unknown = VectorIdentity({"model": "/opt/m", "gguf_file": None})
    assert here.differences(VectorIdentity(here.fields)) == []
    assert VectorIdentity(here.fields).differences(unknown) == ["model"]


# Machine paths (the collection may move), secrets' places, and unsafe switches.
@pytest.mark.parametrize(
    "name", ["cache_dir", "embedding_cache", "server", "token_env", "trust_remote_code"]
)
def test_machine_local_fields_are_never_stored(name):
    assert name not in stored_fields(EmbedderConfig(**{name: CHANGED[name]}))


def _calibration(model_dir, folder, **fields) -> str:
    base = PromptEmbedder(str(model_dir), device="cpu", **fields)
    sample = [f"text {i} about {w}" for i, w in enumerate(["bees", "rain", "tax"] * 4)]
    cal = Calibration.fit(base.embed_raw(sample), fitted_on=fit_fields(base.config))
    return str(cal.save(folder))


def test_calibration_is_identified_by_content_not_path(tmp_path, model_dirs):
    path = _calibration(model_dirs["llama"], tmp_path / "a")
    moved = tmp_path / "b" / "copy.npz"
    moved.parent.mkdir()
    shutil.copy(path, moved)
    a = EmbedderConfig(model=str(model_dirs["llama"]), calibration=path)
    b = EmbedderConfig(model=str(model_dirs["llama"]), calibration=str(moved))
    assert of_config(a).differences(of_config(b)) == []
    assert stored_fields(a)["calibration"] == "calibration-" + of_config(a).calibration + ".npz"
    assert str(tmp_path) not in json.dumps(stored_fields(a))


def test_calibration_check_covers_max_length_and_query_template(tmp_path, model_dirs):
    path = _calibration(model_dirs["llama"], tmp_path)
    for change in ({"max_length": 200}, {"query_template": "eol"}):
        with pytest.raises(ValueError, match=next(iter(change))):
            PromptEmbedder(str(model_dirs["llama"]), device="cpu", calibration=path, **change)


def test_validate_config_update_refuses_a_calibration_change(tmp_path, model_dirs):
    from promptembed.store.function import PromptEmbeddingFunction

    a = _calibration(model_dirs["llama"], tmp_path / "a")
    b = _calibration(model_dirs["llama"], tmp_path / "b", max_length=200)
    old = PromptEmbeddingFunction(str(model_dirs["llama"]), calibration=a).get_config()
    new = PromptEmbeddingFunction(str(model_dirs["llama"]), calibration=b, max_length=200)
    with pytest.raises(ValueError, match="calibration"):
        new.validate_config_update(old, new.get_config())
    same = {**old, "embedder": {**old["embedder"], "batch_size": 7}}
    new.validate_config_update(old, same)  # a runtime field may change


def test_weights_fingerprint_follows_content_not_path(tmp_path, model_dirs):
    here = tmp_path / "model"
    shutil.copytree(model_dirs["llama"], here)
    original = PromptEmbedder(str(model_dirs["llama"]), device="cpu")
    copy = PromptEmbedder(str(here), device="cpu")
    assert copy.fingerprint == original.fingerprint  # another path, the same weights
    assert of_embedder(copy).precision == "float32"
    rewrite_weights(here, seed=1)
    rewritten = PromptEmbedder(str(here), device="cpu")
    assert rewritten.fingerprint != copy.fingerprint


def test_the_tokenizer_is_part_of_the_weights_fingerprint(tmp_path, model_dirs):
    here = tmp_path / "model"
    shutil.copytree(model_dirs["llama"], here)
    cache = str(tmp_path / "cache")
    before = PromptEmbedder(str(here), device="cpu", embedding_cache=cache)
    first = before.embed(["a man plays"])
    # Same weights, another tokenizer: the byte-level merges lose their last rule.
    data = json.loads((here / "tokenizer.json").read_text())
    data["model"]["merges"] = data["model"]["merges"][:-40]
    (here / "tokenizer.json").write_text(json.dumps(data))
    after = PromptEmbedder(str(here), device="cpu", embedding_cache=cache)
    assert after.fingerprint != before.fingerprint
    assert of_embedder(after).differences(of_embedder(before)) == ["weights"]
    fresh = PromptEmbedder(str(here), device="cpu").embed(["a man plays"])
    # The embedding cache keys on the fingerprint: the old vector is not served.
    assert (after.embed(["a man plays"]) == fresh).all()
    assert not (fresh == first).all()

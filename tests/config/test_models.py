import pytest
from pydantic import ValidationError

from promptembed import EmbedderConfig, load_config
from promptembed.config import Config, RetrievalConfig, StoreConfig
from promptembed.identity import stored_fields


def test_defaults():
    cfg = EmbedderConfig()
    # The default model's measured best templates (tests/config/test_aliases.py).
    assert (cfg.model, cfg.template, cfg.query_template) == ("gemma-3-270m", "eol", "query")
    assert (cfg.pooling, cfg.device, cfg.dtype) == ("last", "auto", "auto")
    assert cfg.trust_remote_code is False


def test_unknown_field_is_rejected():
    with pytest.raises(ValidationError, match="temperature"):
        EmbedderConfig(temperature=0.5)


def test_literal_error_lists_valid_values():
    with pytest.raises(ValidationError) as info:
        EmbedderConfig(pooling="max")
    assert "'last' or 'mean'" in str(info.value) and "max" in str(info.value)


def test_bad_template_is_rejected_with_reason():
    with pytest.raises(ValidationError, match=r"has no '\{text\}' placeholder"):
        EmbedderConfig(template="mystery")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_valid_devices(device):
    assert EmbedderConfig(device=device).device == device


def test_bad_device_lists_choices():
    with pytest.raises(ValidationError, match="use one of auto, cpu, mps, cuda, cuda:N"):
        EmbedderConfig(device="gpu0")


def test_stored_config_never_carries_trust_remote_code():
    cfg = EmbedderConfig(trust_remote_code=True)
    assert "trust_remote_code" not in stored_fields(cfg)
    assert EmbedderConfig(**stored_fields(cfg)).trust_remote_code is False


def test_store_needs_exactly_one_location():
    with pytest.raises(ValidationError, match="exactly one of `path` or `host`"):
        StoreConfig()
    with pytest.raises(ValidationError, match="exactly one"):
        StoreConfig(path="x", host="localhost")
    assert StoreConfig(host="localhost").mode == "http"


def test_toml_round_trip_resolves_relative_store_path(tmp_path):
    (tmp_path / "pe.toml").write_text(
        '[embedder]\nmodel = "smollm2-135m"\ntemplate = "cot"\n'
        '[store]\npath = "./chroma"\ncollection = "docs"\n'
    )
    cfg = load_config(tmp_path / "pe.toml")
    assert cfg.embedder.model == "smollm2-135m" and cfg.embedder.template == "cot"
    assert cfg.store.path == str((tmp_path / "chroma").resolve())
    assert load_config(cfg.model_dump()) == cfg


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        load_config("nope.toml")


def test_unknown_table_in_toml(tmp_path):
    (tmp_path / "pe.toml").write_text("[embeder]\nmodel = 'x'\n")
    with pytest.raises(ValidationError, match="embeder"):
        load_config(tmp_path / "pe.toml")


def test_config_is_the_same_model_everywhere():
    assert Config.model_fields["embedder"].annotation is EmbedderConfig


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("EmbedderConfig", "batch_size"),
        ("EmbedderConfig", "max_batch_tokens"),
        ("EmbedderConfig", "max_length"),
        ("EmbedderConfig", "replicas"),
        ("ServerConfig", "max_inputs_per_request"),
        ("ServerConfig", "max_chars_per_input"),
        ("ServerConfig", "max_queued_inputs"),
        ("ServerConfig", "max_batch_inputs"),
        ("ServerConfig", "retry_after_s"),
        ("RayConfig", "batch_size"),
        ("RayConfig", "num_workers"),
        ("IndexConfig", "chunk_size"),
    ],
)
@pytest.mark.parametrize("size", [0, -1])
def test_sizes_below_one_are_refused_naming_the_field(model, field, size):
    from pydantic import ValidationError

    import promptembed.config as config

    with pytest.raises(ValidationError, match=field):
        getattr(config, model)(**{field: size})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "sparse"}, "'dense' or 'hybrid'"),
        ({"mode": "hybrid", "fusion": "max"}, "'rrf' or 'weighted'"),
        ({"mode": "hybrid", "channels": ["dense", "splade"]}, "'dense', 'bm25' or 'sparse'"),
        ({"mode": "hybrid", "channels": ["bm25"]}, "at least two channels"),
        ({"mode": "hybrid", "channels": ["bm25", "bm25"]}, "duplicates"),
        ({"channels": ["dense", "sparse"]}, "only applies with mode = 'hybrid'"),
        ({"mode": "hybrid", "weights": {"sparse": 1.0}}, "not in channels"),
        ({"mode": "hybrid", "weights": {"dense": -1.0}}, ">= 0"),
        ({"mode": "hybrid", "candidates": 0}, "greater than or equal to 1"),
    ],
)
def test_retrieval_config_refuses_bad_values(fields, message):
    with pytest.raises(ValidationError, match=message):
        RetrievalConfig(**fields)


def test_retrieval_config_from_toml(tmp_path):
    from promptembed.config import load_config

    path = tmp_path / "c.toml"
    path.write_text(
        '[retrieval]\nmode = "hybrid"\nweights = { dense = 0.3, bm25 = 0.7 }\n'
        'lexical_path = "lex"\n'
    )
    cfg = load_config(path)
    assert cfg.retrieval.active == ["dense", "bm25"]
    assert cfg.retrieval.lexical_path == str((tmp_path / "lex").resolve())


def test_a_dumped_config_loads_again():
    from promptembed.config import Config, load_config

    for retrieval in ({}, {"mode": "hybrid", "channels": ["bm25", "sparse"], "fusion": "rrf"}):
        cfg = load_config({"retrieval": retrieval})
        assert load_config(cfg.model_dump()) == cfg
        assert Config.model_validate_json(cfg.model_dump_json()) == cfg


def test_the_stemmer_list_is_pystemmers():
    stemmer = pytest.importorskip("Stemmer")
    from promptembed.config.models import STEMMERS

    assert set(stemmer.algorithms()) == STEMMERS

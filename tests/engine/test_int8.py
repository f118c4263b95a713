"""dtype="int8" on the CPU: close to float32, batch invariant, composes, refuses clearly."""

from __future__ import annotations

import importlib
import random
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("torchao")

from promptembed import PromptEmbedder, Template
from promptembed.config import EmbedderConfig
from promptembed.engine.forward import decoder_layers
from promptembed.engine.loading import resolve_dtype

TEXTS = [
    "A man is playing a guitar.",
    "A child is riding a horse",
    "一个孩子在骑马。",
    "Mixed 中文 and English, with emoji 🎸",
    "",
    "The essence of a sentence is captured by its main subjects and actions " * 3,
]
QUANTISED = ["llama", "gemma3", "qwen2", "opt"]  # gpt2's blocks have no nn.Linear


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def int8_weights(emb: PromptEmbedder) -> int:
    """Decoder linear layers whose weight really is int8 (torchao's Int8Tensor)."""
    layers = [m for m in decoder_layers(emb.model).modules() if isinstance(m, torch.nn.Linear)]
    return sum(getattr(m.weight, "qdata", m.weight).dtype == torch.int8 for m in layers)


@pytest.mark.parametrize("arch", QUANTISED)
@pytest.mark.parametrize("template", ["ke", "eol"])
def test_int8_vectors_are_close_to_float32(arch, template, embedder_factory):
    exact = embedder_factory(arch, template=template, dtype="float32")
    fast = embedder_factory(arch, template=template, dtype="int8")
    assert fast.precision == "int8" and exact.precision == "float32"
    assert int8_weights(fast) > 0 and int8_weights(exact) == 0
    assert "dtype='int8'" in repr(fast) and "dtype='float32'" in repr(exact)
    sims = cosines(fast.embed(TEXTS), exact.embed(TEXTS))
    assert sims.min() >= 0.99, sims


# Activations are quantised per token, so neighbours and padding never change a text's
# scales. Bit equality is still out of reach: float32 differs ~1e-6 between batch shapes,
# and a value that sits on a rounding boundary then moves by one int8 step. Hence cosine.
# Without AVX-512 VNNI torchao quantises to 7 bits (reduce_range), which doubles that step:
# the random tiny Gemma-3 then lands at 0.9998 on an AMD EPYC without AVX-512.
_REDUCED = bool(importlib.import_module("torchao.utils").should_reduce_range(torch.device("cpu")))
ONE_STEP_COSINE = 0.9995 if _REDUCED else 0.9999


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_int8_is_batch_and_order_invariant(arch, embedder_factory):
    emb = embedder_factory(arch, template="ke", dtype="int8", normalize_embeddings=False)
    alone = np.stack([emb.embed(t) for t in TEXTS])
    for batch_size in (2, 64):
        order = list(range(len(TEXTS)))
        random.Random(batch_size).shuffle(order)
        vectors = emb.embed([TEXTS[i] for i in order], batch_size=batch_size)
        assert cosines(vectors, alone[order]).min() >= ONE_STEP_COSINE


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_int8_composes_with_prefix_reuse_and_early_exit(arch, embedder_factory):
    cached = embedder_factory(arch, template="ke", dtype="int8", normalize_embeddings=False)
    whole = embedder_factory(
        arch, template="ke", dtype="int8", normalize_embeddings=False, prefix_cache=False
    )
    assert cached._routes["document"][0].forward.prefix is not None
    assert cosines(cached.embed(TEXTS), whole.embed(TEXTS)).min() >= ONE_STEP_COSINE
    # Early exit: the pooled state equals hidden_states[layer] of the same int8 model run
    # whole, one unpadded prompt at a time.
    layer = Template.parse("ke").layer
    for text, vec in zip(TEXTS, cached.embed(TEXTS)):
        ids = cached.tokenizer(Template.parse("ke").render(text))["input_ids"]
        with torch.inference_mode():
            out = cached.model(torch.tensor([ids]), output_hidden_states=True)
        assert cosines(vec, out.hidden_states[layer][0, -1].numpy()) >= ONE_STEP_COSINE


def test_int8_off_the_cpu_is_refused():
    for device in ("cuda", "mps"):
        with pytest.raises(ValueError, match=r"dtype='int8' runs on the CPU only.*device="):
            resolve_dtype("int8", torch.device(device))
    assert resolve_dtype("int8", torch.device("cpu")) == torch.float32


def test_int8_refuses_a_model_it_would_not_change(model_dirs):
    with pytest.raises(ValueError, match=r"GPT2Model has none.*Conv1D.*dtype='float32'"):
        PromptEmbedder(str(model_dirs["gpt2"]), device="cpu", dtype="int8")


def test_int8_without_torchao_names_the_extra(monkeypatch, model_dirs):
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # import fails
    with pytest.raises(ImportError, match=r"promptembed\[int8\]"):
        PromptEmbedder(str(model_dirs["llama"]), device="cpu", dtype="int8")


def test_int8_is_part_of_the_vector_identity():
    from promptembed.identity import of_config

    exact, fast = (
        of_config(EmbedderConfig(dtype="float32")),
        of_config(EmbedderConfig(dtype="int8")),
    )
    assert fast.precision == "int8" and exact.differences(fast) == ["precision"]
    # The float dtypes are one class (the same weights, rounded); auto is not known yet.
    assert of_config(EmbedderConfig(dtype="bfloat16")).differences(exact) == []
    assert of_config(EmbedderConfig()).differences(fast) == []


def test_int8_and_float32_never_share_embedding_cache_entries(tmp_path, model_dirs):
    common = {"device": "cpu", "template": "eol", "embedding_cache": str(tmp_path / "c")}
    exact = PromptEmbedder(str(model_dirs["llama"]), dtype="float32", **common)
    fast = PromptEmbedder(str(model_dirs["llama"]), dtype="int8", **common)
    a = exact.embed(TEXTS)
    b = fast.embed(TEXTS)  # a shared entry would return float32's vectors bit for bit
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(b, fast.embed(TEXTS))

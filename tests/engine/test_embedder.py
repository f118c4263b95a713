"""PromptEmbedder against a plain reference computation, on tiny models of 5 architectures."""

from __future__ import annotations

import random
import threading
import warnings

import numpy as np
import pytest
import torch

from promptembed import PromptEmbedder, Template

TEXTS = [
    "A man is playing a guitar.",
    "A child is riding a horse",
    "Is this a question?",
    'He said "stop" and left',
    "一个孩子在骑马。",
    "Mixed 中文 and English, with emoji 🎸 and tabs\tand\x07bells",
    "",
    "   ",
    "x",
    "The essence of a sentence is captured by its main subjects and actions " * 3,
]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def prompt_ids(emb: PromptEmbedder, template: str, text: str) -> list[int]:
    return emb.tokenizer(Template.parse(template).render(text))["input_ids"]


@pytest.mark.parametrize("template", ["eol", "sth", "sum", "cot", "ke", "echo", "query"])
def test_each_template_equals_reference(arch, template, embedder_factory, reference):
    emb = embedder_factory(arch, template=template, normalize_embeddings=False)
    vectors = emb.embed(TEXTS)
    layer = Template.parse(template).layer
    for text, vec in zip(TEXTS, vectors):
        ref = reference(arch, prompt_ids(emb, template, text), layer)
        assert cosine(vec, ref) >= 0.9999, (arch, template, text)
        # Not only the direction: the unnormalised vector itself.
        np.testing.assert_allclose(vec, ref, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 64])
def test_batch_and_order_invariance(arch, batch_size, embedder_factory, reference):
    emb = embedder_factory(arch, template="ke", normalize_embeddings=False)
    rng = random.Random(batch_size)
    order = list(range(len(TEXTS)))
    rng.shuffle(order)
    shuffled = [TEXTS[i] for i in order]
    vectors = emb.embed(shuffled, batch_size=batch_size)
    for text, vec in zip(shuffled, vectors):
        ref = reference(arch, prompt_ids(emb, "ke", text), -2)
        assert cosine(vec, ref) >= 0.9999


def test_embedding_does_not_depend_on_batch_neighbours(arch, embedder_factory):
    emb = embedder_factory(arch, template="eol")
    alone = emb.embed(["short"])[0]
    with_long = emb.embed(["a much longer neighbour sentence " * 8, "short", "mid length"])[1]
    assert cosine(alone, with_long) >= 0.9999


def test_prefix_cache_matches_full_computation(arch, embedder_factory):
    with_cache = embedder_factory(arch, template="ke", prefix_cache=True)
    without = embedder_factory(arch, template="ke", prefix_cache=False)
    assert with_cache._routes["document"][0].forward.prefix is not None
    assert without._routes["document"][0].forward.prefix is None
    a, b = with_cache.embed(TEXTS), without.embed(TEXTS)
    for x, y in zip(a, b):
        assert cosine(x, y) >= 0.9999


def test_mean_pooling_equals_reference(arch, embedder_factory, reference):
    emb = embedder_factory(arch, template="cot", pooling="mean", normalize_embeddings=False)
    for text, vec in zip(TEXTS[:5], emb.embed(TEXTS[:5], batch_size=2)):
        ref = reference(arch, prompt_ids(emb, "cot", text), -2, pooling="mean")
        assert cosine(vec, ref) >= 0.9999


@pytest.mark.parametrize("layer", [0, 1, -1, -3])
def test_layer_override(layer, embedder_factory, reference):
    emb = embedder_factory("llama", template="eol", layer=layer, normalize_embeddings=False)
    vec = emb.embed("A man is dancing")
    assert (
        cosine(vec, reference("llama", prompt_ids(emb, "eol", "A man is dancing"), layer)) >= 0.9999
    )


def test_layer_out_of_range_says_valid_range(model_dirs):
    with pytest.raises(ValueError, match=r"valid values are -4\.\.3"):
        PromptEmbedder(str(model_dirs["llama"]), layer=7, device="cpu")


def test_custom_template(embedder_factory, reference):
    spec = "Query: {text}\nIn one word:"
    emb = embedder_factory("qwen2", template=spec, normalize_embeddings=False)
    vec = emb.embed("find the horse")
    ids = emb.tokenizer(Template.parse(spec).render("find the horse"))["input_ids"]
    assert cosine(vec, reference("qwen2", ids, -1)) >= 0.9999


def test_normalisation_can_be_switched_off(embedder_factory):
    on = embedder_factory("llama", template="eol")
    off = embedder_factory("llama", template="eol", normalize_text=False)
    # 'x' becomes 'x.' under the reference normalisation, so the prompts differ...
    assert cosine(on.embed("x"), off.embed("x")) < 0.9999
    # ...while a sentence it leaves alone gives the same vector.
    assert cosine(on.embed("x."), off.embed("x.")) >= 0.9999


def test_output_shape_dtype_and_norm(embedder_factory):
    emb = embedder_factory("llama", template="ke")
    many = emb.embed(["a", "b", "c"])
    one = emb.embed("a")
    assert many.shape == (3, emb.dimension) and many.dtype == np.float32
    assert one.shape == (emb.dimension,)
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one, many[0], atol=1e-6)
    assert emb.embed([]).shape == (0, emb.dimension)


def test_no_lm_head_loaded(embedder_factory):
    emb = embedder_factory("llama")
    names = [n for n, _ in emb.model.named_modules()]
    assert not any("lm_head" in n for n in names)
    assert emb.dimension == 32


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (None, "got NoneType"),
        (3, "got int"),
        (b"bytes", "got bytes"),
        (["ok", None], r"texts\[1\] must be str, got NoneType"),
        (["ok", "fine", 4.5], r"texts\[2\] must be str, got float"),
        (["ok", b"x"], r"texts\[1\] must be str, got bytes"),
    ],
)
def test_bad_input_raises_type_error_naming_index(bad, match, embedder_factory):
    with pytest.raises(TypeError, match=match):
        embedder_factory("llama").embed(bad)


def test_odd_text_gives_finite_vectors(arch, embedder_factory):
    emb = embedder_factory(arch, template="eol")
    odd = ["", " ", "\n\t", "\x00\x01\x1b[31m", "🎸🎸", "中文English混合", "\u200b", "a" * 3000]
    vectors = emb.embed(odd)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_truncation_keeps_suffix_and_warns(embedder_factory, reference):
    emb = embedder_factory("llama", template="eol", max_length=40, normalize_embeddings=False)
    long_text = "the cat sat on the mat and looked at the horse " * 20
    with pytest.warns(UserWarning, match="1 of 2 texts were truncated"):
        vectors = emb.embed([long_text, "short"])
    route = emb._routes["document"][0]
    ids, _ = route.prompts.encode([long_text])
    assert len(ids[0]) <= 40
    suffix = emb.tokenizer('" means in one word:"', add_special_tokens=False)["input_ids"]
    assert ids[0][-len(suffix) :] == suffix
    decoded = emb.tokenizer.decode(ids[0], skip_special_tokens=True)
    assert decoded.startswith('This sentence : "the cat sat')
    assert decoded.endswith('" means in one word:"')
    # The vector is that of the truncated prompt, computed plainly.
    assert cosine(vectors[0], reference("llama", ids[0], -1)) >= 0.9999


def test_echo_truncation_cuts_both_copies_alike_and_keeps_suffix(embedder_factory, reference):
    emb = embedder_factory("llama", template="echo", max_length=60, normalize_embeddings=False)
    long_text = "the cat sat on the mat and looked at the horse " * 20
    with pytest.warns(UserWarning, match="truncated"):
        vector = emb.embed(long_text)
    ids, _ = emb._routes["document"][0].prompts.encode([long_text])
    # Each text token is spent twice, so the cut is sized for two copies: the prompt
    # fills the budget without overshooting it.
    assert 60 - 2 <= len(ids[0]) <= 60
    decoded = emb.tokenizer.decode(ids[0], skip_special_tokens=True)
    first, second = decoded.split('" , rewritten sentence : "')
    assert first.removeprefix('Rewrite the sentence : "') == second.removesuffix(
        '" means in one word:"'
    )
    assert cosine(vector, reference("llama", ids[0], -1)) >= 0.9999


def test_no_warning_without_truncation(embedder_factory):
    emb = embedder_factory("llama", template="eol")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb.embed(["short text"])


def test_huge_text_is_cut_quickly(embedder_factory):
    emb = embedder_factory("llama", template="ke", max_length=160)
    with pytest.warns(UserWarning, match="truncated"):
        vec = emb.embed("word " * 1_000_000)
    assert np.isfinite(vec).all()


def test_template_longer_than_max_length_is_rejected(model_dirs):
    with pytest.raises(ValueError, match="raise max_length"):
        PromptEmbedder(str(model_dirs["llama"]), template="ke", max_length=16, device="cpu")


def test_concurrent_embeds_are_safe(embedder_factory):
    emb = embedder_factory("gemma3", template="ke")
    expected = emb.embed(TEXTS)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(emb.embed(TEXTS, batch_size=3))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 6
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


def test_embed_iter_streams_in_order(embedder_factory):
    emb = embedder_factory("llama", template="eol")
    texts = [f"sentence number {i}" for i in range(25)]
    chunks = list(emb.embed_iter((t for t in texts), chunk_size=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    np.testing.assert_allclose(np.concatenate(chunks), emb.embed(texts), atol=1e-5)


def test_stream_error_names_global_index(embedder_factory):
    emb = embedder_factory("llama", template="eol")
    with pytest.raises(TypeError, match=r"texts\[12\]"):
        list(emb.embed_iter(iter(["a"] * 12 + [None]), chunk_size=5))


def test_query_template_route(embedder_factory, reference):
    emb = embedder_factory("llama", template="ke", query_template="eol", normalize_embeddings=False)
    q = emb.embed_query("where is the horse")
    ref = reference("llama", prompt_ids(emb, "eol", "where is the horse"), -1)
    assert cosine(q, ref) >= 0.9999
    assert cosine(emb.embed("where is the horse"), q) < 0.9999


def test_from_model_wraps_loaded_objects(model_dirs, tokenizer, embedder_factory):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dirs["qwen2"])
    wrapped = PromptEmbedder.from_model(model, tokenizer, template="cot")
    loaded = embedder_factory("qwen2", template="cot")
    np.testing.assert_allclose(wrapped.embed(TEXTS[:3]), loaded.embed(TEXTS[:3]), atol=1e-5)


def test_count_tokens_excludes_the_template(embedder_factory):
    emb = embedder_factory("llama", template="ke")
    text = "A man is playing a guitar."
    expected = len(emb.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert emb.count_tokens([text, text]) == 2 * expected
    assert emb.count_tokens([]) == 0


def test_tokenizing_and_embedding_threads_do_not_collide(embedder_factory):
    emb = embedder_factory("llama", template="eol")
    texts = [f"sentence {i} " * (i % 7 + 1) for i in range(40)]
    expected = emb.embed(texts)
    errors: list[BaseException] = []

    def embed() -> None:
        try:
            np.testing.assert_allclose(emb.embed(texts, batch_size=4), expected, atol=1e-5)
        except BaseException as exc:
            errors.append(exc)

    def count() -> None:
        try:
            for _ in range(50):
                emb.count_tokens(texts)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (embed, count, embed, count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


# -- input the tokenizer cannot take, sizes below one, vectors that are not finite ----------


def test_lone_surrogate_is_refused_naming_its_index(embedder_factory):
    emb = embedder_factory("llama")
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode.*position 1"):
        emb.embed(["fine", "a\ud800b"])
    with pytest.raises(ValueError, match=r"texts\[0\] is not valid Unicode"):
        emb.embed("\udfff")
    with pytest.raises(ValueError, match=r"texts\[3\] is not valid Unicode"):
        list(emb.embed_iter(iter(["a", "b", "c", "\ud800"]), chunk_size=2))
    with pytest.raises(ValueError, match=r"texts\[0\] is not valid Unicode"):
        emb.count_tokens(["\ud800"])
    assert emb.embed(["after the refusals, 🎸 still embeds"]).shape == (1, emb.dimension)


@pytest.mark.parametrize("size", [0, -1])
def test_sizes_below_one_are_refused(size, embedder_factory, model_dirs):
    from pydantic import ValidationError

    emb = embedder_factory("llama")
    with pytest.raises(ValueError, match=f"batch_size must be >= 1.*got {size}"):
        emb.embed(["a"], batch_size=size)
    with pytest.raises(ValueError, match=f"chunk_size must be >= 1.*got {size}"):
        list(emb.embed_iter(["a"], chunk_size=size))
    for field in ("batch_size", "max_batch_tokens", "max_length", "replicas"):
        with pytest.raises(ValidationError, match=field):
            PromptEmbedder(str(model_dirs["llama"]), device="cpu", **{field: size})


def test_non_finite_vector_raises_naming_the_text_and_the_model(model_dirs, monkeypatch):
    from promptembed.engine.embedder import NonFiniteEmbeddingError

    emb = PromptEmbedder(str(model_dirs["llama"]), device="cpu")
    real = emb._compute

    def poisoned(route, texts, batch_size, bar):
        out = real(route, texts, batch_size, bar)
        out[[i for i, t in enumerate(texts) if t == "bad"]] = np.nan
        return out

    monkeypatch.setattr(emb, "_compute", poisoned)
    with pytest.raises(NonFiniteEmbeddingError, match=r"texts\[2\].*model produced") as info:
        emb.embed(["a", "b", "bad", "c"])
    assert info.value.index == 2
    with pytest.raises(NonFiniteEmbeddingError, match=r"texts\[3\]"):
        list(emb.embed_iter(["a", "b", "c", "bad"], chunk_size=2))
    with pytest.raises(NonFiniteEmbeddingError, match=r"texts\[1\]"):
        emb.embed_raw(["a", "bad"])  # what a calibration would be fitted on
    assert np.isfinite(emb.embed(["a", "b"])).all()


def test_nan_weights_are_named_as_the_cause(model_dirs):
    from promptembed.engine.embedder import NonFiniteEmbeddingError

    emb = PromptEmbedder(str(model_dirs["llama"]), device="cpu")
    with torch.no_grad():
        emb.model.get_input_embeddings().weight[5:] = float("nan")  # a corrupt weight file
    with pytest.raises(NonFiniteEmbeddingError, match=r"texts\[0\].*corrupt weights"):
        emb.embed(["hello", "world"])

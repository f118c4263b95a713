"""Boosters II: in-context demonstrations and Token Prepending against plain references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptembed.identity import of_config
from promptembed.templates import Template

DEMOS = [["A jockey is riding a horse.", "Equestrian"], ["The cat sat on the mat.", "Cat"]]
TEXTS = ["A man is playing a guitar.", "Stocks fell", "一个孩子在骑马。", ""]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_demonstrations_render_in_the_templates_own_format():
    eol = Template.parse("eol").with_demonstrations(DEMOS[:1])
    assert eol.render("A man is dancing") == (
        'This sentence : "A jockey is riding a horse." means in one word:"Equestrian". '
        'This sentence : "A man is dancing." means in one word:"'
    )
    zh = Template.parse("zh-eol").with_demonstrations([["一个孩子在骑马", "骑马"]])
    assert zh.render("天气很好") == (
        "这句话：“一个孩子在骑马。”用一个词来概括就是：“骑马”。"
        "这句话：“天气很好。”用一个词来概括就是：“"
    )
    sth = Template.parse("sth").with_demonstrations([["A cat.", "Cat"]])
    assert (
        sth.render("x")
        == 'This sentence : "A cat." means something Cat. This sentence : "x." means something'
    )


@pytest.mark.parametrize("template", ["eol", "ke@-2"])
def test_demonstrations_equal_the_full_prompt_through_the_full_model(
    arch, embedder_factory, reference, tokenizer, template
):
    emb = embedder_factory(
        arch, template=template, demonstrations=DEMOS, normalize_embeddings=False
    )
    shown = Template.parse(template).with_demonstrations(DEMOS)
    assert emb._routes["document"][0].forward.prefix is not None  # the demos are cached
    got = emb.embed(TEXTS, batch_size=3)
    for text, vec in zip(TEXTS, got):
        # The reference is the whole prompt string, tokenised whole, through the full model.
        ids = tokenizer(shown.render(text))["input_ids"]
        assert "Equestrian" in tokenizer.decode(ids, skip_special_tokens=True)
        want = reference(arch, ids, shown.layer)
        assert _cos(vec, want) > 0.9999


def test_demonstrations_change_the_vector_and_the_identity(embedder_factory):
    plain = embedder_factory("llama", template="eol")
    shown = embedder_factory("llama", template="eol", demonstrations=DEMOS)
    assert _cos(plain.embed("A man"), shown.embed("A man")) < 0.9999
    assert of_config(plain.config).record() != of_config(shown.config).record()


def test_empty_demonstration_is_refused():
    from pydantic import ValidationError

    from promptembed.config import EmbedderConfig

    with pytest.raises(ValidationError, match="non-empty sentence and word"):
        EmbedderConfig(demonstrations=[["A cat.", ""]])
    with pytest.raises(ValidationError, match="1 <= start < end"):
        EmbedderConfig(token_prepending=(2, 2))


# -- Token Prepending ----------------------------------------------------------------------
def _tp_reference(model, ids: list[int], at: int, start: int, end: int, layer: int):
    """Token Prepending written out: a loop over Llama blocks, overwriting the placeholder."""
    with torch.no_grad():
        h = model.embed_tokens(torch.tensor([ids]))
        positions = torch.arange(len(ids))[None]
        rope = model.rotary_emb(h, position_ids=positions)
        states = []
        for i, block in enumerate(model.layers):
            states.append(h)
            if start <= i < end:
                h = h.clone()
                h[0, at] = h[0, -1]
            h = block(h, attention_mask=None, position_ids=positions, position_embeddings=rope)
        states.append(model.norm(h))
    return states[layer][0, -1].numpy()


@pytest.mark.parametrize("span", [(1, 2), (1, 3), (2, 3)])
@pytest.mark.parametrize("prefix_cache", [True, False])
def test_token_prepending_equals_a_plain_loop_over_blocks(
    model_dirs, embedder_factory, span, prefix_cache
):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dirs["llama"]).eval()
    emb = embedder_factory(
        "llama",
        template="eol",
        token_prepending=span,
        prefix_cache=prefix_cache,
        normalize_embeddings=False,
    )
    route = emb._routes["document"][0]
    at = route.prompts.placeholder_index
    got = emb.embed(TEXTS, batch_size=4)  # one padded batch
    ids, _ = route.prompts.encode(TEXTS)
    for row, vec in zip(ids, got):
        assert row[at] == route.prompts.placeholder
        want = _tp_reference(model, row, at, *span, layer=-1)
        assert _cos(vec, want) > 0.9999
    plain = embedder_factory("llama", template="eol", normalize_embeddings=False)
    assert _cos(got[0], plain.embed(TEXTS[0])) < 0.9999  # it does change the vector


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_token_prepending_is_batch_invariant(arch, embedder_factory, pooling):
    emb = embedder_factory(arch, template="ke@-2", token_prepending=(1, 3), pooling=pooling)
    texts = ["short", "a much longer sentence about a man playing a guitar on stage", *TEXTS]
    batched = emb.embed(texts, batch_size=len(texts))
    alone = np.stack([emb.embed(t, batch_size=1) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=2e-5)


def test_token_prepending_with_demonstrations_and_prefix_cache_agree(arch, embedder_factory):
    fields = {"template": "eol", "token_prepending": (1, 2), "demonstrations": DEMOS}
    cached = embedder_factory(arch, **fields).embed(TEXTS)
    uncached = embedder_factory(arch, prefix_cache=False, **fields).embed(TEXTS)
    np.testing.assert_allclose(cached, uncached, atol=2e-5)


@pytest.mark.parametrize("span", [(3, 9), (1, 1000), (1, 4)])
def test_token_prepending_beyond_the_model_is_refused(embedder_factory, span):
    # Before, an end past the last block was clamped silently ([1, 1000] ran as [1, 3]).
    with pytest.raises(
        ValueError, match=r"out of range .* 3 decoder blocks.*1 <= start < end <= 3"
    ):
        embedder_factory("llama", token_prepending=span)


# -- contrastive prompting -----------------------------------------------------------------
def _cp_reference(model, tokenizer, text: str, block: int, alpha: float, layer: int):
    """Two plain passes of single unpadded prompts through the full model."""
    from promptembed.templates import AUXILIARY_TEMPLATES

    proj = model.layers[block].self_attn.o_proj
    aux_ids = tokenizer(AUXILIARY_TEMPLATES["en"].render(text))["input_ids"]
    ids = tokenizer(Template.parse("eol").render(text))["input_ids"]
    seen: list[torch.Tensor] = []
    grab = proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0][0, -1].clone()))
    with torch.no_grad():
        model(torch.tensor([aux_ids]))
    grab.remove()

    def steer(_module, args):
        x = args[0].clone()
        x[0, -1] = alpha * (x[0, -1] - seen[0])
        return (x,)

    handle = proj.register_forward_pre_hook(steer)
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    handle.remove()
    return out.hidden_states[layer][0, -1].numpy()


@pytest.mark.parametrize("arch_name", ["llama", "qwen2", "gemma3"])
@pytest.mark.parametrize("prefix_cache", [True, False])
def test_contrastive_prompting_equals_two_plain_passes(
    model_dirs, embedder_factory, tokenizer, arch_name, prefix_cache
):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dirs[arch_name]).eval()
    emb = embedder_factory(
        arch_name,
        template="eol",
        contrastive=(1, 0.7),
        prefix_cache=prefix_cache,
        normalize_embeddings=False,
    )
    got = emb.embed(TEXTS, batch_size=len(TEXTS))  # one padded batch
    for text, vec in zip(TEXTS, got):
        want = _cp_reference(model, tokenizer, text, 1, 0.7, layer=-1)
        assert _cos(vec, want) > 0.9999
    plain = embedder_factory(arch_name, template="eol", normalize_embeddings=False)
    assert _cos(got[0], plain.embed(TEXTS[0])) < 0.9999


def test_contrastive_composes_with_demonstrations_and_token_prepending(embedder_factory):
    fields = {
        "template": "eol",
        "contrastive": (1, 1.0),
        "token_prepending": (1, 2),
        "demonstrations": DEMOS,
    }
    texts = ["short", "a much longer sentence about a man playing a guitar on stage", *TEXTS]
    emb = embedder_factory("llama", **fields)
    batched = emb.embed(texts, batch_size=len(texts))
    alone = np.stack([emb.embed(t, batch_size=1) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=2e-5)
    uncached = embedder_factory("llama", prefix_cache=False, **fields).embed(texts)
    np.testing.assert_allclose(batched, uncached, atol=2e-5)


def test_contrastive_refuses_what_it_cannot_do(embedder_factory):
    with pytest.raises(ValueError, match=r"self_attn\.o_proj"):
        embedder_factory("gpt2", contrastive=(1, 1.0))
    with pytest.raises(ValueError, match="before the pooled layer"):
        embedder_factory("llama", template="eol@-2", contrastive=(2, 1.0))

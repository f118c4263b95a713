"""The offline real models (slow: run with `pytest -m slow`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptembed import PromptEmbedder, Template

pytestmark = pytest.mark.slow

TEXTS = ["A man is playing a guitar.", "一个孩子在骑马。", "", 'Why "now"?', "emoji 🎸 mix 中文"]


@pytest.fixture(scope="module", params=["smollm2-135m", "gemma-3-270m"])
def real(request):
    try:
        return PromptEmbedder(request.param, template="ke", normalize_embeddings=False)
    except ImportError as exc:
        pytest.skip(str(exc))


def test_real_model_equals_reference(real):
    vectors = real.embed(TEXTS, batch_size=2)
    template = Template.parse("ke")
    for text, vec in zip(TEXTS, vectors):
        ids = real.tokenizer(template.render(text), return_tensors="pt")["input_ids"]
        with torch.no_grad():
            ref = real.model(ids, output_hidden_states=True).hidden_states[-2][0, -1].numpy()
        assert vec @ ref / (np.linalg.norm(vec) * np.linalg.norm(ref)) >= 0.9999


def test_converted_copy_is_cached(real):
    from promptembed.engine.loading import default_cache_dir

    converted = list((default_cache_dir() / "converted").glob("*/model.safetensors"))
    assert converted, "the first load should leave a safetensors copy"


def test_similar_sentences_are_closer(real):
    a, b, c = PromptEmbedder.embed(
        real, ["A man plays guitar.", "A guy is playing a guitar.", "Stocks fell on Monday."]
    )
    cos = lambda x, y: x @ y / np.linalg.norm(x) / np.linalg.norm(y)  # noqa: E731
    assert cos(a, b) > cos(a, c)

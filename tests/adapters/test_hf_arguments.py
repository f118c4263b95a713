"""The argument names users bring from Hugging Face embeddings: honoured or refused.

Every constructor argument of ``langchain_huggingface.HuggingFaceEmbeddings`` and of
``llama_index.embeddings.huggingface.HuggingFaceEmbedding`` is passed to the matching
promptembed adapter; each is either honoured (visible in the config) or refused with
an error naming it. Nothing is dropped in silence.
"""

from __future__ import annotations

import inspect

import pytest
from pydantic import ValidationError

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from promptembed.config.hf_names import HF_ARGUMENTS
from promptembed.langchain import PromptEmbeddings
from promptembed.llama_index import PromptEmbedding

# As of langchain-huggingface 1.2.3 and llama-index-embeddings-huggingface 0.8.0.
LANGCHAIN_HF = [
    "model_name",
    "cache_folder",
    "model_kwargs",
    "encode_kwargs",
    "query_encode_kwargs",
    "multi_process",
    "show_progress",
]
LLAMA_INDEX_HF = [
    "model_name",
    "tokenizer_name",
    "pooling",
    "max_length",
    "query_instruction",
    "text_instruction",
    "normalize",
    "model",
    "tokenizer",
    "embed_batch_size",
    "cache_folder",
    "trust_remote_code",
    "device",
    "callback_manager",
    "parallel_process",
    "target_devices",
    "show_progress_bar",
]
KE_SUFFIX = '" means in one word:"'

# argument -> (a value, a check of the built adapter) when honoured, or (value, None)
# when it must be refused.
HONOURED = {
    "model_name": ("smollm2-135m", lambda e: e.config.model == "smollm2-135m"),
    "model": ("smollm2-135m", lambda e: e.config.model == "smollm2-135m"),
    "cache_folder": (None, lambda e: True),
    "model_kwargs": (
        {"device": "cpu", "trust_remote_code": True},
        lambda e: e.config.device == "cpu" and e.config.trust_remote_code,
    ),
    "encode_kwargs": (
        {"prompt": "passage: ", "normalize_embeddings": False, "batch_size": 4},
        lambda e: (
            e.config.template == "passage: {text}" + KE_SUFFIX
            and e.config.normalize_embeddings is False
            and e.config.batch_size == 4
        ),
    ),
    "query_encode_kwargs": (
        {"prompt": "query: "},
        lambda e: e.config.query_template == "query: {text}" + KE_SUFFIX and e.config.layer == -2,
    ),
    "multi_process": (False, lambda e: True),
    "show_progress": (True, lambda e: e.config.show_progress),
    "tokenizer_name": ("deprecated", lambda e: True),
    "pooling": ("mean", lambda e: e.config.pooling == "mean"),
    "max_length": (128, lambda e: e.config.max_length == 128),
    "query_instruction": (
        "Represent this query:",
        lambda e: e.config.query_template == "Represent this query: {text}" + KE_SUFFIX,
    ),
    "text_instruction": (
        "Represent this passage:",
        lambda e: e.config.template == "Represent this passage: {text}" + KE_SUFFIX,
    ),
    "normalize": (False, lambda e: e.config.normalize_embeddings is False),
    "tokenizer": ("deprecated", lambda e: True),
    "embed_batch_size": (7, lambda e: e.embed_batch_size == 7),
    "trust_remote_code": (True, lambda e: e.config.trust_remote_code),
    "device": ("cpu", lambda e: e.config.device == "cpu"),
    "callback_manager": (None, lambda e: e.callback_manager is not None),
    "parallel_process": (False, lambda e: True),
    "target_devices": (None, lambda e: True),
    "show_progress_bar": (True, lambda e: e.config.show_progress),
}
REFUSED = {
    "cache_folder": "/tmp/hf",
    "model_kwargs": {"torch_dtype": "float16"},
    "encode_kwargs": {"convert_to_tensor": True},
    "multi_process": True,
    "tokenizer_name": "gpt2",
    "pooling": "cls",
    "tokenizer": "gpt2",
    "parallel_process": True,
    "target_devices": ["cuda:0", "cuda:1"],
}
LANGCHAIN_ONLY_REFUSED = {"embed_batch_size", "callback_manager"}  # LlamaIndex's own fields


def test_the_lists_match_the_installed_packages():
    assert set(LANGCHAIN_HF) | set(LLAMA_INDEX_HF) == set(HF_ARGUMENTS)
    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError:
        pass
    else:
        assert set(HuggingFaceEmbeddings.model_fields) == set(LANGCHAIN_HF)
    try:
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    except ImportError:
        pass
    else:
        params = inspect.signature(HuggingFaceEmbedding.__init__).parameters
        assert {p for p in params if p not in ("self", "model_kwargs")} == set(LLAMA_INDEX_HF)


@pytest.mark.parametrize(
    ("adapter", "name"),
    [(PromptEmbeddings, n) for n in LANGCHAIN_HF] + [(PromptEmbedding, n) for n in LLAMA_INDEX_HF],
    ids=lambda x: x if isinstance(x, str) else x.__name__,
)
def test_every_hf_argument_is_honoured_or_refused(adapter, name):
    value, check = HONOURED[name]
    if adapter is PromptEmbeddings and name in LANGCHAIN_ONLY_REFUSED:
        with pytest.raises(ValidationError, match=name):
            adapter(**{name: value})
        return
    built = adapter(**{name: value})
    assert check(built), f"{name}={value!r} was not honoured: {built.config!r}"
    if name in REFUSED:
        with pytest.raises((ValueError, TypeError), match=name if name != "pooling" else "pool"):
            adapter(**{name: REFUSED[name]})


def test_unknown_keyword_is_refused_by_both_adapters():
    for adapter in (PromptEmbeddings, PromptEmbedding):
        with pytest.raises(ValidationError, match="not_an_argument"):
            adapter(not_an_argument=1)


def test_the_wrong_model_case_loads_the_asked_model(model_dirs):
    asked = str(model_dirs["llama"])
    emb = PromptEmbedding(model_name=asked, query_instruction="Represent this query:", device="cpu")
    assert emb.model_name == asked and emb.config.model == asked
    assert emb.embedder.config.model == asked  # loaded, not the default alias
    query = emb.embedder.embed_query("bees")
    plain = PromptEmbedding(model_name=asked, device="cpu").embedder.embed_query("bees")
    assert not (query == plain).all()  # the instruction reached the prompt
    again = PromptEmbedding.from_dict(emb.to_dict())
    assert again.config == emb.config.model_copy(update={"trust_remote_code": False})


def test_trust_remote_code_is_honoured_but_never_restored():
    emb = PromptEmbedding(model="smollm2-135m", trust_remote_code=True)
    assert emb.config.trust_remote_code is True
    data = emb.to_dict()
    assert "trust_remote_code" not in data["config"]
    data["config"]["trust_remote_code"] = True  # a tampered file
    assert PromptEmbedding.from_dict(data).config.trust_remote_code is False
    assert PromptEmbeddings(model_name="smollm2-135m", trust_remote_code=True).config.model


def test_instructions_refuse_what_they_cannot_express():
    with pytest.raises(ValueError, match="ensemble"):
        PromptEmbedding(template=["eol", "ke"], query_instruction="Q:")
    with pytest.raises(ValueError, match="layer"):
        PromptEmbedding(template="ke", query_template="eol", text_instruction="P:")
    with pytest.raises(ValueError, match="disagree"):
        PromptEmbeddings(model="gemma-3-270m", model_name="smollm2-135m")
    with pytest.raises(ValueError, match="differs"):
        PromptEmbeddings(encode_kwargs={"batch_size": 2}, query_encode_kwargs={"batch_size": 3})


def test_the_chroma_function_takes_model_name_too():
    from promptembed.store.function import PromptEmbeddingFunction

    ef = PromptEmbeddingFunction(model_name="smollm2-135m", normalize_embeddings=False)
    assert ef.config.model == "smollm2-135m" and ef.config.normalize_embeddings is False
    with pytest.raises(ValueError, match="disagree"):
        PromptEmbeddingFunction("gemma-3-270m", model_name="smollm2-135m")

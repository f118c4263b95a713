"""Tiny random models (no downloads) and a tokenizer trained in a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import free_port

CORPUS = [
    'This sentence : "A man is playing a guitar." means in one word:"',
    "After thinking step by step , this sentence : means something can be summarized as",
    "The essence of a sentence is often captured by its main subjects and actions, while "
    "descriptive terms provide additional but less central details. With this in mind ,",
    "A child is riding a horse. The cat sat on the mat. Stocks fell sharply on Monday.",
    "一个孩子在骑马。 一个男人在弹吉他。 今天天气很好。",
] * 5

ARCHS = ["llama", "gemma3", "qwen2", "gpt2", "opt"]


def make_tokenizer(bos: bool = True):
    """A byte-level BPE tokenizer (any text encodes), with BOS like Llama/Gemma."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 0)]
        )
    # No pad token on purpose: the embedder must not need one.
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def make_config(arch: str, vocab: int):
    from transformers import (
        Gemma3TextConfig,
        GPT2Config,
        LlamaConfig,
        OPTConfig,
        Qwen2Config,
    )

    common = {"vocab_size": vocab, "bos_token_id": 0, "eos_token_id": 1}
    if arch == "llama":
        return LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            **common,
        )
    if arch == "gemma3":
        # A small sliding window so that prompts cross it and prefix reuse meets it.
        return Gemma3TextConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            sliding_window=8,
            layer_types=[
                "sliding_attention",
                "full_attention",
                "sliding_attention",
                "full_attention",
            ],
            pad_token_id=1,
            **common,
        )
    if arch == "qwen2":
        return Qwen2Config(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            **common,
        )
    if arch == "gpt2":
        return GPT2Config(n_embd=32, n_layer=3, n_head=4, n_positions=512, **common)
    if arch == "opt":
        return OPTConfig(
            hidden_size=32,
            num_hidden_layers=3,
            ffn_dim=64,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=512,
            pad_token_id=1,
            **common,
        )
    raise ValueError(arch)


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """Each architecture saved as a directory, loadable like a real checkpoint."""
    from transformers import AutoModelForCausalLM

    dirs = {}
    for arch in ARCHS:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(make_config(arch, len(tokenizer)))
        path = tmp_path_factory.mktemp(arch)
        model.save_pretrained(path)  # with its LM head: the loader must drop it
        tokenizer.save_pretrained(path)
        dirs[arch] = path
    return dirs


@pytest.fixture(params=ARCHS)
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def embedder_factory(model_dirs):
    """Build (and memoise per test session) embedders over the tiny models, on CPU fp32."""
    from promptembed import PromptEmbedder

    made: dict[tuple, PromptEmbedder] = {}

    def make(arch: str, **fields):
        key = (arch, repr(sorted(fields.items())))
        if key not in made:
            fields.setdefault("device", "cpu")
            made[key] = PromptEmbedder(str(model_dirs[arch]), **fields)
        return made[key]

    return make


@pytest.fixture(scope="session")
def reference(model_dirs, tokenizer):
    """The plain reference: one unpadded prompt through the full model, hidden_states[layer]."""
    from transformers import AutoModel

    models = {}

    def ref(arch: str, prompt_ids: list[int], layer: int, pooling: str = "last"):
        if arch not in models:
            models[arch] = AutoModel.from_pretrained(model_dirs[arch]).eval()
        with torch.no_grad():
            out = models[arch](torch.tensor([prompt_ids]), output_hidden_states=True)
        states = out.hidden_states[layer][0]
        return (states[-1] if pooling == "last" else states.mean(0)).numpy()

    return ref


@pytest.fixture
def chroma_server(tmp_path):
    """A real ``chroma run`` on 127.0.0.1 and a free port (yielded); always terminated."""
    import subprocess
    import sys
    import time

    chromadb = pytest.importorskip("chromadb")
    exe = Path(sys.executable).with_name("chroma")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "chromadb.cli.cli"]
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    args = ["run", "--path", str(tmp_path / "server-db"), "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*cmd, *args, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.skip(f"chroma run exited early: {(tmp_path / 'server.log').read_text()}")
            try:
                chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail("chroma run did not answer within 30 s")
                time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()

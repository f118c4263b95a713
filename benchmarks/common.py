"""What several benchmarks share: data paths, inputs, the peer systems, a tiny model.

Scripts import it as ``from benchmarks.common import ...`` and run as modules from the
repository root (``python -m benchmarks.speed.bench_throughput ...``). Heavy packages
(torch, transformers, the peers) are imported inside the functions that need them, so a
worker subprocess pays only for what it builds.
"""

from __future__ import annotations

import csv
import itertools
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: run every benchmark from here."""
DATA = ROOT.parent / "shared" / "data"
"""The offline data sets (STS-B, SciFact) beside the repository."""
STSB = DATA / "stsb"
STS_DEV = STSB / "stsb-en-dev.csv"
SCIFACT = DATA / "scifact"
SCIFACT_CORPUS = SCIFACT / "corpus.jsonl"
REF_BATCH = 16
"""The paper's reference computation: a fixed batch of 16 texts in input order."""
DEV_SETS = {
    "scifact": ("scifact", "queries.jsonl", "qrels/train.tsv"),
    "nfcorpus": ("nfcorpus", "queries-dev.jsonl", "qrels/dev.tsv"),
    "cmrc": ("cmrc2018-passages", "queries-dev.jsonl", "qrels/dev.tsv"),
}
"""The retrieval collections tuned on: folder under DATA, queries file, qrels file."""


def results_dir(script: str) -> Path:
    """The ``results/`` folder next to a benchmark script (pass ``__file__``)."""
    return Path(script).resolve().parent / "results"


# -- inputs -------------------------------------------------------------------------------
def read_dev_set(
    name: str, queries: int | None = None
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """Corpus, judged queries (the first ``queries`` of them, file order) and qrels."""
    from promptembed.evaluation import read_beir

    folder, query_file, qrels_file = DEV_SETS[name]
    root = DATA / folder
    docs, qs, qrels = read_beir(root / "corpus.jsonl", root / query_file, root / qrels_file)
    if queries is not None:
        qs = dict(list(qs.items())[:queries])
    return docs, qs, qrels


def emit(result: dict[str, Any], out: Path | None) -> None:
    """Print a benchmark's result as one JSON line, and write it to ``out`` if given."""
    text = json.dumps(result, ensure_ascii=False)
    print(text)
    if out:
        out.write_text(text + "\n", encoding="utf-8")


def sts_sentences(path: Path = STS_DEV) -> list[str]:
    """The distinct sentences of an STS-B CSV, in file order (header cells skipped)."""
    texts: list[str] = []
    seen: set[str] = set()
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            for s in row[:2]:
                if s not in seen and s not in ("s1", "s2"):
                    seen.add(s)
                    texts.append(s)
    return texts


def read_docs(path: Path = SCIFACT_CORPUS) -> Iterator[str]:
    """Documents of a BEIR corpus file (``title text``), one at a time."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            yield f"{doc.get('title', '')} {doc.get('text', '')}".strip()


def load_texts(data: str, n: int, path: Path | None = None) -> list[str]:
    """First ``n`` distinct STS-B dev sentences (``sts``), or SciFact documents."""
    if data == "sts":
        return sts_sentences(path or STS_DEV)[:n]
    return list(itertools.islice(read_docs(path or SCIFACT_CORPUS), n))


def model_dir(model: str) -> Path:
    """The plain Hugging Face directory of an offline alias (its converted copy), or a path.

    The reference, llemb and sentence-transformers load the same weights from here.
    """
    if Path(model).is_dir():
        return Path(model)
    from promptembed.config import EmbedderConfig
    from promptembed.engine.loading import _resolve_source, default_cache_dir

    source = _resolve_source(EmbedderConfig(model=model), default_cache_dir())
    if source.gguf_file is not None:
        sys.exit(f"no converted copy of {model}: run PromptEmbedder({model!r}) once first")
    return Path(source.path)


def fit_texts(texts: list[str], tokenizer: Any, template: Any, max_length: int) -> list[str]:
    """Normalise each text and cut it (whole tokens) so its prompt fits ``max_length``.

    Every system then gets the same, already fitting, text: no system truncates.
    """
    from promptembed.templates import NORMALIZERS

    def norm(t: str) -> str:
        return NORMALIZERS[template.normalizer](t) if template.normalize else t

    def size(t: str) -> int:
        return len(tokenizer(template.render(t, normalize=False))["input_ids"])

    out = []
    for text in texts:
        fitted = norm(text)
        excess = size(fitted) - max_length
        if excess > 0:
            ends = [e for _, e in tokenizer(text, return_offsets_mapping=True)["offset_mapping"]]
            keep = len(ends) - excess
            while excess > 0 and keep > 0:
                fitted = norm(text[: ends[keep - 1]])
                excess = size(fitted) - max_length
                keep -= max(excess, 1)
        out.append(fitted)
    return out


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


class StoredVectors:
    """An embedder stand-in returning vectors computed earlier, one row per text.

    The library's evaluations take an embedder; this lets them score vectors that a
    probe has already computed and transformed (calibrated, whitened), e.g.
    ``evaluate_sts(StoredVectors(sentences, vectors), pairs).spearman``.
    """

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.index = {t: i for i, t in enumerate(texts)}
        self.vectors = vectors

    def embed(self, texts: list[str]) -> np.ndarray:
        """The stored rows of ``texts``, in that order."""
        return self.vectors[[self.index[t] for t in texts]]


# -- the systems compared (each returns ``encode(texts) -> vectors``) ----------------------
def _promptembed(spec: dict, dtype: str = "float32") -> Any:
    from promptembed import PromptEmbedder

    emb = PromptEmbedder(
        spec["model"],
        template=spec["template"],
        device="cpu",
        dtype=dtype,
        max_length=spec["max_length"],
        normalize_text=False,  # the texts come normalised
    )
    return emb.embed


def _reference(spec: dict) -> Any:
    """The paper's computation, re-implemented: full model, left padding, all states."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptembed.templates import Template

    template = Template.parse(spec["template"])
    tok = AutoTokenizer.from_pretrained(spec["dir"])
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(spec["dir"], dtype=torch.float32).eval()

    def encode(texts: list[str]) -> np.ndarray:
        out = []
        prompts = [template.render(t, normalize=False) for t in texts]
        for i in range(0, len(prompts), REF_BATCH):
            enc = tok(prompts[i : i + REF_BATCH], padding=True, return_tensors="pt")
            with torch.no_grad():
                states = model(**enc, output_hidden_states=True).hidden_states
            out.append(states[template.layer][:, -1].float().numpy())
        return np.concatenate(out)

    return encode


def _llemb(spec: dict) -> Any:
    import torch
    from llemb import Encoder

    from promptembed.templates import Template

    template = Template.parse(spec["template"])
    enc = Encoder(spec["dir"], device="cpu", dtype=torch.float32)
    # llemb's "ke" prompt is character for character ours; its "prompteol" writes
    # "This Sentence", so for eol (and others) we pass our rendered prompt instead.
    native = {"ke": "ke"}.get(spec["template"])

    def encode(texts: list[str]) -> np.ndarray:
        items = texts if native else [template.render(t, normalize=False) for t in texts]
        vectors = enc.encode(
            items,
            prompt_template=native,
            pooling_method="last_token",
            layer_index=template.layer,
            batch_size=REF_BATCH,
        )
        return vectors.float().numpy()

    return encode


def last_token_st(directory: str, max_length: int | None = None) -> Any:
    """sentence-transformers over ``directory``: plain text in, last-token pooling, fp32."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    # Pin the plain text modality: sentence-transformers 6 otherwise routes text through
    # the tokenizer's chat template (SmolLM2 ships one), which changes the prompt.
    module = Transformer(
        directory,
        max_seq_length=max_length,
        model_kwargs={"dtype": torch.float32},
        modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        module_output_name="token_embeddings",
    )
    if module.tokenizer.pad_token is None:
        module.tokenizer.pad_token = module.tokenizer.eos_token
    pooling = Pooling(module.get_embedding_dimension(), pooling_mode="lasttoken")
    return SentenceTransformer(modules=[module, pooling], device="cpu")


def _sentence_transformers(spec: dict) -> Any:
    from promptembed.templates import Template

    template = Template.parse(spec["template"])
    if template.layer != -1:
        raise SystemExit("sentence-transformers pools the last layer only (use --template eol)")
    st = last_token_st(spec["dir"], spec["max_length"])

    def encode(texts: list[str]) -> np.ndarray:
        prompts = [template.render(t, normalize=False) for t in texts]
        return st.encode(prompts, convert_to_numpy=True)

    return encode


BUILDERS = {
    "promptembed": _promptembed,
    "promptembed-int8": lambda spec: _promptembed(spec, dtype="int8"),
    "reference": _reference,
    "llemb": _llemb,
    "sentence-transformers": _sentence_transformers,
}
"""System name -> ``builder(spec)`` returning ``encode(texts)``; ``spec`` holds
``model``, ``dir`` (:func:`model_dir`), ``template`` and ``max_length``."""


def flops_per_prompt(config: Any, blocks: int, length: int, skip: int, lm_head: bool) -> float:
    """FLOPs of one prompt: linear layers of ``blocks`` blocks on ``length - skip`` tokens,
    causal attention of those tokens over all earlier ones, and optionally the LM head."""
    c = config.get_text_config()
    d, heads = c.hidden_size, c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or d // heads
    kv = getattr(c, "num_key_value_heads", None) or heads
    inter = getattr(c, "intermediate_size", None) or 4 * d
    linear = d * heads * head_dim * 2 + 2 * d * kv * head_dim + 3 * d * inter
    run = length - skip
    attention = sum(4 * heads * head_dim * (p + 1) for p in range(skip, length))
    total = blocks * (2 * linear * run + attention)
    if lm_head:
        total += 2 * d * c.vocab_size * length
    return float(total)


# -- a tiny random model, and a port -------------------------------------------------------
def build_tiny_llama(target: Path, corpus: Path = SCIFACT_CORPUS, vocab: int = 2048) -> None:
    """Save a tiny random Llama and a BPE tokenizer trained on ``corpus`` to ``target``.

    Built like ``tests/conftest.py``'s model: hidden 64, 3 layers, byte-level BPE trained
    on the first 500 documents in about a second.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(itertools.islice(read_docs(corpus), 500), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 0)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=0,
        eos_token_id=1,
    )
    LlamaForCausalLM(config).save_pretrained(target)
    fast.save_pretrained(target)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

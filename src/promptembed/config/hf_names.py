"""Hugging Face argument names, translated to config fields: each honoured or refused."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptembed.config import EmbedderConfig
from promptembed.templates import PLACEHOLDER, Template

if TYPE_CHECKING:
    pass


# Every constructor argument of langchain_huggingface.HuggingFaceEmbeddings and
# llama_index.embeddings.huggingface.HuggingFaceEmbedding, and what becomes of it.
HF_ARGUMENTS: dict[str, str] = {
    "model_name": "model",
    "cache_folder": "refused unless None: promptembed loads aliases offline; set HF_HOME "
    "for hub downloads",
    "model_kwargs": "keys device and trust_remote_code are honoured; others refused",
    "encode_kwargs": "prompt -> template, normalize_embeddings, batch_size, "
    "show_progress_bar; others refused",
    "query_encode_kwargs": "prompt -> query_template; other keys must agree with encode_kwargs",
    "multi_process": "refused when True: use replicas= (GPUs) or promptembed.ray",
    "show_progress": "show_progress",
    "tokenizer_name": "refused unless 'deprecated' (the model's own tokenizer is used)",
    "pooling": "promptembed's pooling ('last' or 'mean')",
    "max_length": "max_length (tokens per prompt; only the text is truncated)",
    "query_instruction": "query_template (instruction + {text} + template suffix)",
    "text_instruction": "template (instruction + {text} + template suffix)",
    "normalize": "normalize_embeddings",
    "model": "model",
    "tokenizer": "refused unless 'deprecated'",
    "embed_batch_size": "LlamaIndex's embed_batch_size (texts per call)",
    "trust_remote_code": "trust_remote_code (never stored)",
    "device": "device",
    "callback_manager": "LlamaIndex's callback_manager",
    "parallel_process": "refused when True: use replicas= (GPUs) or promptembed.ray",
    "target_devices": "refused unless None: use device= and replicas=",
    "show_progress_bar": "show_progress",
}


_NO_OP = {
    "cache_folder": None,
    "multi_process": False,
    "tokenizer_name": "deprecated",
    "tokenizer": "deprecated",
    "parallel_process": False,
    "target_devices": None,
}


_ENCODE_KEYS = {
    "normalize_embeddings": "normalize_embeddings",
    "batch_size": "batch_size",
    "show_progress_bar": "show_progress",
}


def instruction_template(instruction: str, spec: str | list[str], joiner: str = "") -> str:
    """The template for an HF-style instruction: ``instruction + joiner + {text} + suffix``.

    Example:
        >>> instruction_template("Query:", "eol", joiner=" ")
        'Query: {text}" means in one word:"'

    """
    if not isinstance(spec, str):
        raise ValueError(
            f"an instruction cannot be combined with the template ensemble {spec!r}; "
            "write template=/query_template= with the instruction in each member instead"
        )
    template = Template.parse(spec)
    if template.middle is not None:
        raise ValueError(f"an instruction cannot be combined with the echo template {spec!r}")
    if not joiner:  # sentence-transformers: prompt + text, verbatim
        return instruction + PLACEHOLDER + template.suffix
    # LlamaIndex: f"{instruction} {text}".strip()
    head = instruction.strip() + joiner if instruction.strip() else ""
    return head + PLACEHOLDER + template.suffix


def _set_instruction(fields: dict[str, Any], key: str, instruction: str, joiner: str) -> None:
    """Map an instruction onto ``template`` or ``query_template``, keeping the layer."""
    base = fields.get("template", EmbedderConfig.model_fields["template"].default)
    source = fields.get(key) or base
    fields[key] = instruction_template(instruction, source, joiner)
    layer = Template.parse(source).layer
    if fields.get("layer") is None and layer != -1:
        others = [fields.get("template", base), fields.get("query_template")]
        others = [s for s in others if isinstance(s, str) and PLACEHOLDER not in s]
        if any(Template.parse(s).layer != layer for s in others):
            raise ValueError(
                f"the instruction template keeps {source!r}'s layer {layer}, which other "
                "templates do not share: pass layer= explicitly"
            )
        fields["layer"] = layer


def _encode_kwargs(fields: dict[str, Any], data: dict[str, Any]) -> None:
    docs = dict(data.pop("encode_kwargs", None) or {})
    queries = dict(data.pop("query_encode_kwargs", None) or {})
    for name, prompt in (("template", docs.pop("prompt", None)),
                         ("query_template", queries.pop("prompt", None))):  # fmt: skip
        if prompt is not None:
            _set_instruction(fields, name, prompt, "")
    for key, value in {**docs, **queries}.items():
        if key not in _ENCODE_KEYS:
            raise ValueError(
                f"encode_kwargs key {key!r} is not supported by promptembed; supported: "
                f"prompt, {', '.join(_ENCODE_KEYS)}"
            )
        if key in docs and key in queries and docs[key] != queries[key]:
            raise ValueError(
                f"{key} differs between encode_kwargs and query_encode_kwargs; promptembed "
                "embeds documents and queries with one setting"
            )
        fields[_ENCODE_KEYS[key]] = value


def translate_hf_arguments(data: dict[str, Any]) -> dict[str, Any]:
    """Map Hugging Face embedding argument names onto promptembed's, or refuse them.

    Returns ``data`` with HF names replaced; raises ``ValueError`` naming an argument
    that promptembed cannot honour. See :data:`HF_ARGUMENTS`.
    """
    data = dict(data)
    if "model_name" in data and data["model_name"] is not None:
        name = data.pop("model_name")
        if data.get("model") not in (None, name):
            raise ValueError(f"model_name={name!r} and model={data['model']!r} disagree")
        data["model"] = name
    for key, default in _NO_OP.items():
        if key in data and data.pop(key) != default:
            raise ValueError(f"argument {key!r} is not supported: {HF_ARGUMENTS[key]}")
    model_kwargs = dict(data.pop("model_kwargs", None) or {})
    for key in ("device", "trust_remote_code"):
        if key in model_kwargs:
            data[key] = model_kwargs.pop(key)
    if model_kwargs:
        raise ValueError(f"model_kwargs {sorted(model_kwargs)} are not supported: use device=, "
                         "dtype= and trust_remote_code=")  # fmt: skip
    for old, new in (("normalize", "normalize_embeddings"), ("show_progress_bar", "show_progress")):
        if old in data:
            data[new] = data.pop(old)
    _encode_kwargs(data, data)
    for key, target in (("text_instruction", "template"), ("query_instruction", "query_template")):
        instruction = data.pop(key, None)
        if instruction is not None:
            _set_instruction(data, target, instruction, " ")
    return data

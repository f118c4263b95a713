"""The engine: text to vectors, with no store, framework, server or CLI in sight.

``templates`` -> ``prompts`` (token ids, prefix) -> ``loading`` (device, dtype,
quantisation, conversion cache) -> ``forward`` (early exit, prefix KV reuse, hooks) ->
``pooling`` -> ``calibration`` -> the caller, batched by ``batching`` and memoised by
``cache``. :class:`~promptembed.engine.embedder.PromptEmbedder` is the public class
(also ``promptembed.PromptEmbedder``).
"""

"""The per-batch prefix cache is expanded, never repeated, and never mutates the stored one."""

from __future__ import annotations

import torch
from transformers import AutoModel

from promptembed.engine.forward import LayerForward


def test_batch_cache_expands_and_leaves_prefix_intact(arch, model_dirs):
    model = AutoModel.from_pretrained(model_dirs[arch]).eval()
    fwd = LayerForward(model, -1)
    prefix = [0, 5, 9, 13, 17, 21, 30, 31, 40, 41]  # longer than Gemma3's test window (8)
    fwd.set_prefix(prefix)
    stored = [(layer.keys.clone(), layer.values.clone()) for layer in fwd.prefix.cache.layers]
    prompts = [[*prefix, 7, 8, 99], [*prefix, 101], [*prefix, 3, 4, 5, 6, 7, 8, 9, 10, 11]]
    for size in (1, 3, 2):  # varying batch sizes reuse the same stored cache
        batch = prompts[:size]
        with_reuse = fwd(batch, with_prefix=True)
        without = fwd(batch, with_prefix=False)
        torch.testing.assert_close(with_reuse, without, rtol=1e-4, atol=1e-4)
    cache = fwd._batch_cache(4)
    assert all(layer.keys.shape[0] == 4 for layer in cache.layers if layer.keys.numel())
    for layer, (k, v) in zip(fwd.prefix.cache.layers, stored):
        assert layer.keys.shape[0] == 1
        torch.testing.assert_close(layer.keys, k)
        torch.testing.assert_close(layer.values, v)


def test_batch_cache_does_not_keep_the_batch_states(model_dirs):
    model = AutoModel.from_pretrained(model_dirs["llama"]).eval()
    fwd = LayerForward(model, -1)
    fwd.set_prefix([0, 5, 9, 13])
    cache = fwd._batch_cache(2)
    layer = cache.layers[0]
    k = torch.randn(2, layer.keys.shape[1], 3, layer.keys.shape[3])
    keys, values = layer.update(k, k.clone())
    assert keys.shape[2] == values.shape[2] == 4 + 3  # prefix + new, returned
    torch.testing.assert_close(keys[:, :, 4:], k)
    assert layer.keys.shape[2] == 4  # but nothing of the batch was stored

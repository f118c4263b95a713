"""LayerForward directly: several layers in one pass, early exit, prefix reuse."""

import numpy as np
import pytest
import torch
from transformers import AutoModel

from promptembed.engine.forward import LayerForward, decoder_layers, resolve_layer


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_several_layers_in_one_pass_equal_hidden_states(arch, model_dirs, pooling):
    model = AutoModel.from_pretrained(model_dirs[arch]).eval()
    n = len(decoder_layers(model))
    layers = [-1, -2, 1, 0]
    prompts = [[0, 5, 9, 13, 17, 21], [0, 5, 9, 40], [0, 5, 9, 13, 17, 21, 99, 101]]
    fwd = LayerForward(model, layers, pooling=pooling)
    fwd.set_prefix([0, 5, 9])
    for with_prefix in (False, True):
        out = fwd(prompts, with_prefix=with_prefix)
        assert out.shape == (3, 4, model.config.get_text_config().hidden_size)
        for i, ids in enumerate(prompts):
            with torch.no_grad():
                hs = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
            for j, layer in enumerate(layers):
                h = hs[layer][0]
                ref = h[-1] if pooling == "last" else h.mean(0)
                np.testing.assert_allclose(out[i, j].numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)
    assert resolve_layer(-1, n) == n


def test_early_exit_skips_later_blocks(model_dirs):
    model = AutoModel.from_pretrained(model_dirs["llama"]).eval()
    blocks = decoder_layers(model)
    ran: list[int] = []
    handles = [
        b.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, b in enumerate(blocks)
    ]
    norm_ran: list[bool] = []
    handles.append(model.norm.register_forward_hook(lambda *a: norm_ran.append(True)))
    LayerForward(model, -2)([[0, 5, 9]])
    assert ran == list(range(len(blocks) - 1)) and not norm_ran  # last block, norm skipped
    ran.clear()
    LayerForward(model, -1)([[0, 5, 9]])
    assert ran == list(range(len(blocks))) and norm_ran
    for h in handles:
        h.remove()


def test_prefix_must_match_to_be_reused(model_dirs):
    model = AutoModel.from_pretrained(model_dirs["llama"]).eval()
    fwd = LayerForward(model, -1)
    fwd.set_prefix([0, 5, 9])
    assert fwd.uses_prefix([0, 5, 9, 3])
    assert not fwd.uses_prefix([0, 5, 8, 3])  # boundary merge changed a prefix token
    assert not fwd.uses_prefix([0, 5, 9])  # nothing left to run

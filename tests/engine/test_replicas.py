"""Data parallel replicas: batches spread over model copies, results unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptembed import PromptEmbedder
from promptembed.engine.loading import replica_devices


def test_two_replicas_share_batches_and_agree(model_dirs, embedder_factory, monkeypatch):
    from promptembed.engine.forward import LayerForward

    texts = [f"sentence {i} " * (i % 5 + 1) for i in range(30)]
    single = embedder_factory("qwen2", template="ke").embed(texts)
    emb = PromptEmbedder(str(model_dirs["qwen2"]), device="cpu", template="ke", replicas=2)
    assert len(emb._models) == 2 and emb._models[0] is not emb._models[1]
    used: list[int] = []
    real = LayerForward.__call__

    def spy(self, batch, **kwargs):
        used.append(next(i for i, m in enumerate(emb._models) if m is self.model))
        return real(self, batch, **kwargs)

    monkeypatch.setattr(LayerForward, "__call__", spy)
    out = emb.embed(texts, batch_size=2)
    np.testing.assert_allclose(out, single, atol=1e-5)
    assert set(used) == {0, 1}  # both replicas took batches


def test_replica_devices():
    cpu = torch.device("cpu")
    assert replica_devices("cpu", cpu, None) == [cpu]
    assert replica_devices("cpu", cpu, 3) == [cpu, cpu, cpu]


@pytest.mark.gpu
def test_one_replica_per_visible_gpu():
    count = torch.cuda.device_count()
    devices = replica_devices("auto", torch.device("cuda"), None)
    assert devices == (
        [torch.device("cuda")] if count == 1 else [torch.device("cuda", i) for i in range(count)]
    )
    assert replica_devices("cuda:0", torch.device("cuda", 0), None) == [torch.device("cuda", 0)]
    with pytest.raises(ValueError, match="CUDA devices are visible"):
        replica_devices("auto", torch.device("cuda"), count + 1)

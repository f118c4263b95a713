import torch

from promptembed.engine.pooling import last_token_indices, last_token_pool, mean_pool

HIDDEN = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)


def test_last_token_right_padding():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert last_token_indices(mask).tolist() == [1, 3]
    assert torch.equal(last_token_pool(HIDDEN, mask), torch.stack([HIDDEN[0, 1], HIDDEN[1, 3]]))


def test_last_token_left_padding():
    mask = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert last_token_indices(mask).tolist() == [3, 3]


def test_last_token_single_token_rows():
    mask = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 1]])
    assert torch.equal(last_token_pool(HIDDEN, mask), torch.stack([HIDDEN[0, 0], HIDDEN[1, 3]]))


def test_mean_pool_ignores_padding_on_either_side():
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert torch.allclose(mean_pool(HIDDEN, right)[0], HIDDEN[0, :2].mean(0))
    assert torch.allclose(mean_pool(HIDDEN, left)[0], HIDDEN[0, 2:].mean(0))
    assert torch.allclose(mean_pool(HIDDEN, right)[1], HIDDEN[1].mean(0))


def test_mean_pool_is_float32_for_half_inputs():
    out = mean_pool(HIDDEN.to(torch.bfloat16), torch.ones(2, 4))
    assert out.dtype == torch.float32

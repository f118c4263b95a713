import random

import pytest

from promptembed.engine.batching import plan_batches


@pytest.mark.parametrize("seed", range(5))
def test_every_index_once_and_budget_respected(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 300) for _ in range(200)]
    batches = plan_batches(lengths, max_tokens=1000, max_items=16)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(200))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 1000


def test_longest_first_and_similar_lengths_grouped():
    batches = plan_batches([5, 50, 6, 49], max_tokens=100, max_items=8)
    assert batches == [[1, 3], [2, 0]]


def test_item_over_budget_gets_its_own_batch():
    assert plan_batches([500, 2, 3], max_tokens=100, max_items=8) == [[0], [2, 1]]


def test_empty():
    assert plan_batches([], max_tokens=100, max_items=8) == []

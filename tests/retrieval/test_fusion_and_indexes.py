"""Retrieval building blocks: fusion, the lexical index (Chinese too), the sparse index."""

from __future__ import annotations

import pytest

from promptembed.retrieval import LexicalIndex, SparseIndex, fuse, tokenize
from tests.helpers import RETRIEVAL_DOCS


def test_weighted_fusion_is_min_max_weighted_sum():
    fused = fuse(
        {"dense": [("a", 0.9), ("b", 0.5), ("c", 0.1)], "bm25": [("c", 12.0), ("d", 2.0)]},
        weights={"dense": 0.25, "bm25": 0.75},
    )
    assert fused == [("c", 0.75), ("a", 0.25), ("b", 0.125), ("d", 0.0)]


def test_rrf_counts_ranks_only():
    fused = fuse({"x": [("a", 100.0), ("b", 1.0)], "y": [("b", 0.2), ("a", 0.1)]}, method="rrf")
    assert [d for d, _ in fused] == ["a", "b"]  # tied scores: by id
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_fusion_refuses_unknown_method_and_weights():
    with pytest.raises(ValueError, match=r"rrf.*weighted"):
        fuse({"x": [("a", 1.0)]}, method="max")
    with pytest.raises(ValueError, match="sparse"):
        fuse({"x": [("a", 1.0)]}, weights={"sparse": 1.0})


def test_chinese_query_matches_chinese_document_lexically():
    index = LexicalIndex(list(RETRIEVAL_DOCS), list(RETRIEVAL_DOCS.values()))
    assert index.search("绿茶降血压", 4)[0][0] == "tea-zh"
    assert index.search("阳光", 4)[0][0] == "tomato-zh"
    assert index.search("blood pressures", 4)[0][0] == "tea"  # stemmed: pressures ~ pressure


def test_tokenize_words_stopwords_stems_and_cjk_bigrams():
    assert tokenize("The dancing bees 蜜蜂跳舞", stemmer="english") == [
        "danc",
        "bee",
        "蜜蜂",
        "蜂跳",
        "跳舞",
    ]
    assert tokenize("茶", stemmer=None) == ["茶"]


def test_lexical_index_round_trip(tmp_path):
    index = LexicalIndex(list(RETRIEVAL_DOCS), list(RETRIEVAL_DOCS.values()), k1=1.5, b=0.5)
    index.save(tmp_path / "lex")
    again = LexicalIndex.load(tmp_path / "lex")
    for query in ("green tea", "绿茶", "flowers dance"):
        assert again.search(query, 3) == index.search(query, 3)
    assert again.ids == index.ids


def test_empty_and_unknown_queries_return_nothing():
    index = LexicalIndex(list(RETRIEVAL_DOCS), list(RETRIEVAL_DOCS.values()))
    assert index.search("", 3) == []
    assert index.search("zzzz qqqq", 3) == []
    assert LexicalIndex([], []).search("tea", 3) == []


def test_sparse_index_round_trip(tmp_path):
    import numpy as np
    import scipy.sparse

    m = scipy.sparse.csr_matrix(np.array([[0, 1.0, 2.0], [3.0, 0, 0], [0, 0, 0]], np.float32))
    index = SparseIndex(["a", "b", "c"], m)
    q = scipy.sparse.csr_matrix(np.array([[1.0, 0, 1.0]], np.float32))
    assert index.search(q, 3) == [("b", 3.0), ("a", 2.0)]
    index.save(tmp_path / "sp")
    assert SparseIndex.load(tmp_path / "sp").search(q, 3) == index.search(q, 3)


def test_save_survives_a_leftover_from_a_killed_swap(tmp_path):
    index = LexicalIndex(list(RETRIEVAL_DOCS), list(RETRIEVAL_DOCS.values()))
    (tmp_path / "lex.old").mkdir()
    (tmp_path / "lex.old" / "junk").write_text("x")
    index.save(tmp_path / "lex")
    index.save(tmp_path / "lex")  # replaces an existing index too
    assert LexicalIndex.load(tmp_path / "lex").ids == index.ids
    assert not (tmp_path / "lex.old").exists()


def test_unknown_stemmer_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"'klingon'.*english"):
        LexicalIndex(["a"], ["text"], stemmer="klingon")

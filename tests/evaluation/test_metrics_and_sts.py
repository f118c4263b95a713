"""Evaluation: metrics, reading STS and BEIR data, STS scoring, ranking by vectors."""

import numpy as np
import pytest

from promptembed.evaluation.data import read_beir, read_sts
from promptembed.evaluation.metrics import ndcg_recall, spearman
from promptembed.evaluation.retrieval import rank_by_vectors
from promptembed.evaluation.sts import evaluate_sts


def test_spearman_is_scaled_by_100():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(100.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-100.0)


def test_read_sts_handles_quotes_and_commas(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text('"A, b",c,4.5\nd,"e ""q""",0\n', encoding="utf-8")
    assert read_sts(path) == [("A, b", "c", 4.5), ("d", 'e "q"', 0.0)]


def test_read_sts_names_bad_line(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text("a,b,1\na,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"sts\.csv:2"):
        read_sts(path)


def test_ndcg_and_recall_on_hand_built_ranking():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}}
    ranked = {"q1": ["d1", "d9"], "q2": ["d9", "d2"]}
    ndcg, recall = ndcg_recall(ranked, qrels)
    idcg2 = 1 + 1 / np.log2(3)
    assert ndcg == pytest.approx((1.0 + (1 / np.log2(3)) / idcg2) / 2)
    assert recall == pytest.approx((1.0 + 0.5) / 2)


def test_rank_by_vectors_orders_by_cosine():
    docs = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    assert rank_by_vectors(np.array([[0.0, 2.0]]), docs, ["a", "b", "c"], k=2) == [["b", "c"]]


class _Identity:
    """An embedder whose vectors are known: similarity follows the gold exactly."""

    def embed(self, texts, kind="document"):
        return np.array([[1.0, float(t)] for t in texts], dtype=np.float32)


def test_evaluate_sts_with_known_vectors():
    pairs = [("0", "0", 5.0), ("0", "1", 3.0), ("0", "3", 1.0), ("0", "9", 0.0)]
    result = evaluate_sts(_Identity(), pairs)
    assert result.spearman == pytest.approx(100.0)
    assert (result.pairs, result.sentences) == (4, 4)


def test_read_beir(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"_id": "d1", "title": "T", "text": "body"}\n')
    (tmp_path / "q.jsonl").write_text(
        '{"_id": "q1", "text": "claim"}\n{"_id": "q2", "text": "x"}\n'
    )
    (tmp_path / "r.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    docs, queries, qrels = read_beir(tmp_path / "c.jsonl", tmp_path / "q.jsonl", tmp_path / "r.tsv")
    assert docs == {"d1": "T body"} and queries == {"q1": "claim"} and qrels == {"q1": {"d1": 1}}

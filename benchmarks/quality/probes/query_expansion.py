"""Probe (not shipped): BM25 queries expanded with the LLM's own next-token words.

PromptReps keeps, for a text, the logits of its own words only. This probe lifts that
filter for the *query* (the library's ``WordIds`` replaced by "every token"), takes the
query's top next-token words that BM25 knows and the query lacks (3+ letters, or CJK),
and adds ``lam * w / max(w) * BM25(word)`` for the top ``m`` of them to the query's BM25
score: one forward pass per query, nothing per document. It sweeps m and lam on the
first ``--queries`` judged queries of a dev set and prints nDCG@10 per setting.

    python -m benchmarks.quality.probes.query_expansion --set nfcorpus --template eol@-1

Measured 2026-12-07 (100 queries, Gemma-3-270M): best gains +0.013 NFCorpus (eol@-1),
+0.005 SciFact, +0.005 CMRC (zh-eol@-1), and losses at other settings: not shipped.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks.common import DEV_SETS, read_dev_set
from promptembed import PromptEmbedder
from promptembed.evaluation.metrics import ndcg_recall
from promptembed.retrieval.lexical import LexicalIndex, tokenize


class EveryToken:
    """A ``WordIds`` stand-in that allows every vocabulary token (no own-words filter)."""

    def __init__(self, vocab: int) -> None:
        self.ids = np.arange(vocab)

    def __call__(self, texts):
        return [self.ids for _ in texts]


def expansion_words(emb, rows, queries, known) -> list[dict[str, float]]:
    """Per query, its next-token words BM25 knows and the query lacks, best first."""
    out = []
    for i, q in enumerate(queries):
        row, own, words = rows[i], set(tokenize(q)), {}
        for j in np.argsort(-row.data):
            token = emb.tokenizer.convert_ids_to_tokens(int(row.indices[j])).replace("▁", " ")
            for t in tokenize(token):
                wordlike = (len(t) > 2 or not t.isascii()) and not t.isdigit()
                if wordlike and t not in own and t in known and t not in words:
                    words[t] = float(row.data[j])
        out.append(words)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(DEV_SETS), required=True)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--template", default="eol@-1")
    args = parser.parse_args()
    docs, qs, qrels = read_dev_set(args.set, args.queries)
    emb = PromptEmbedder("gemma-3-270m", template="cot@-3", query_template=args.template)
    emb._sparse_routes_for("query")  # loads the head and the word filter, then replace it
    emb._word_ids = EveryToken(emb.model.config.get_text_config().vocab_size)
    _, rows = emb.embed_with_sparse(list(qs.values()), kind="query")
    index, ids = LexicalIndex(list(docs), list(docs.values())), list(docs)
    vocab = index.bm25.vocab_dict
    words = expansion_words(emb, rows, list(qs.values()), vocab)

    def bm25(tokens: list[str]) -> np.ndarray:
        known = [t for t in tokens if t in vocab]
        return index.bm25.get_scores(known) if known else np.zeros(len(ids))

    base = [bm25(tokenize(q)) for q in qs.values()]

    def ndcg(m: int, lam: float) -> float:
        ranked = {}
        for (qid, _), scores, extra in zip(qs.items(), base, words):
            s = np.array(scores, dtype=float)
            top = list(extra.items())[:m]
            if top and lam:
                w = np.array([x for _, x in top])
                for (term, _), wi in zip(top, w / w.max()):
                    s += lam * wi * bm25([term])
            order = np.argsort(-s)[:100]
            ranked[qid] = [ids[j] for j in order if s[j] > 0]
        return round(ndcg_recall(ranked, {q: qrels[q] for q in qs})[0], 4)

    rows_out = {"bm25": ndcg(0, 0.0)}
    for m in (3, 5, 10, 20):
        for lam in (0.1, 0.2, 0.3, 0.5):
            rows_out[f"m{m}-lam{lam}"] = ndcg(m, lam)
    print(json.dumps({"set": args.set, "queries": len(qs), "template": args.template,
                      "ndcg@10": rows_out}))  # fmt: skip


if __name__ == "__main__":
    main()

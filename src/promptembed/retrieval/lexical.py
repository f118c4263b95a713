"""The lexical channel: BM25 through ``bm25s``, with a tokenizer that reads Chinese too.

Words are runs of letters and digits, lower-cased, English stopwords dropped and
(optionally) Snowball-stemmed with PyStemmer. A run of CJK ideographs has no spaces
to split on, so it becomes its overlapping character **bigrams** (and a lone
character itself), as Lucene's CJK analyzer does: no dictionary to load or keep in
step with the user's domain, and a Chinese query shares bigrams with any document
that contains its words, whatever a segmenter would have cut.

The index is saved with bm25s' own format plus the document ids (``ids.json``);
bm25s knows documents by position only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_IS_CJK = re.compile(rf"[{_CJK}]")


@lru_cache(maxsize=4)
def _stemmer(language: str | None) -> Callable[[str], str] | None:
    if language is None:
        return None
    from promptembed._optional import require

    stemmer = require("Stemmer", "retrieval")  # PyStemmer
    if language not in stemmer.algorithms():
        raise ValueError(
            f"stemmer {language!r} is not a Snowball language; valid values are "
            f"{sorted(stemmer.algorithms())} or '' (no stemming)"
        )
    return lru_cache(maxsize=200_000)(stemmer.Stemmer(language).stemWord)


def tokenize(text: str, stemmer: str | None = "english") -> list[str]:
    """Lexical tokens of one text: words (stopwords out, stemmed) and CJK bigrams.

    Example:
        >>> tokenize("The proteins fold; 蛋白质折叠", stemmer=None)
        ['proteins', 'fold', '蛋白', '白质', '质折', '折叠']

    """
    from promptembed.sparse import english_stopwords

    stop, stem = english_stopwords(), _stemmer(stemmer)
    out: list[str] = []
    for run in _TOKEN.findall(text.lower()):
        if _IS_CJK.match(run):
            out += [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
        elif run not in stop:
            out.append(stem(run) if stem else run)
    return out


class LexicalIndex:
    """A BM25 index over ``(id, text)`` pairs (bm25s), saved and loaded as a folder.

    Args:
        ids: Document ids, in the order of ``texts``.
        texts: Document texts.
        stemmer: Snowball language for PyStemmer, or ``None``.
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.

    Example:
        >>> index = LexicalIndex(["a", "b"], ["green tea lowers blood pressure", "绿茶降血压"])
        >>> [doc for doc, _ in index.search("绿茶", 2)]
        ['b']

    """

    def __init__(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        *,
        stemmer: str | None = "english",
        k1: float = 1.2,
        b: float = 0.75,
    ) -> None:
        from promptembed._optional import require

        bm25s = require("bm25s", "retrieval")
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        self.ids = list(ids)
        self.stemmer = stemmer
        self.bm25 = bm25s.BM25(k1=k1, b=b)
        if self.ids:
            tokens = [tokenize(t, stemmer) or [""] for t in texts]
            self.bm25.index(tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The best ``k`` documents with a positive BM25 score, best first."""
        k = min(k, len(self.ids))
        if k == 0:
            return []
        tokens = tokenize(query, self.stemmer)
        known = [t for t in tokens if t in self.bm25.vocab_dict]
        if not known:
            return []
        hits, scores = self.bm25.retrieve([known], k=k, show_progress=False)
        return [(self.ids[j], float(s)) for j, s in zip(hits[0], scores[0]) if s > 0]

    def save(self, folder: str | Path) -> None:
        """Write the index atomically: a reader sees the old folder or the new one."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
        try:
            if self.ids:
                self.bm25.save(str(tmp), show_progress=False)
            meta = {"ids": self.ids, "stemmer": self.stemmer}
            (tmp / "ids.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
            old = folder.with_name(folder.name + ".old")
            shutil.rmtree(old, ignore_errors=True)  # left by a run killed mid-swap
            if folder.exists():
                os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, folder: str | Path) -> LexicalIndex:
        """Read an index written by :meth:`save`."""
        from promptembed._optional import require

        bm25s = require("bm25s", "retrieval")

        folder = Path(folder)
        meta: dict[str, Any] = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        self = cls.__new__(cls)
        self.ids, self.stemmer = meta["ids"], meta["stemmer"]
        self.bm25 = bm25s.BM25.load(str(folder), show_progress=False) if self.ids else bm25s.BM25()
        return self

"""The lexical channel: BM25 through ``bm25s``, with a tokenizer that reads Chinese too.

Words are runs of letters and digits, lower-cased, English stopwords dropped and
(optionally) Snowball-stemmed with PyStemmer. A run of CJK ideographs has no spaces
to split on, so it becomes its overlapping character **bigrams** (and a lone
character itself), as Lucene's CJK analyzer does: no dictionary to load or keep in
step with the user's domain, and a Chinese query shares bigrams with any document
that contains its words, whatever a segmenter would have cut.

The index is saved with bm25s' own format plus the document ids and a digest of the
indexed ``(id, text)`` pairs (``ids.json``); bm25s knows documents by position only.
Saves and loads of one folder hold a lock file beside it, so processes that save the
same folder at once (an indexer, a query repairing a stale side) never collide.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from filelock import FileLock

from promptembed._util.optional import require
from promptembed.engine.sparse import english_stopwords

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_IS_CJK = re.compile(rf"[{_CJK}]")


@lru_cache(maxsize=4)
def _stemmer(language: str | None) -> Callable[[str], str] | None:
    if language is None:
        return None

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

        bm25s = _bm25s()
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        self.ids = list(ids)
        self.digest = content_digest(self.ids, texts)
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
            meta = {"ids": self.ids, "stemmer": self.stemmer, "digest": self.digest}
            (tmp / "ids.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
            with _lock(folder):  # the two renames below are one step for other processes
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
        bm25s = _bm25s()

        folder = Path(folder)
        self = cls.__new__(cls)
        with _lock(folder):  # never between another process's two renames
            meta: dict[str, Any] = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
            self.ids, self.stemmer = meta["ids"], meta["stemmer"]
            self.digest = meta.get("digest")  # None: written before digests, so rebuilt
            self.bm25 = (
                bm25s.BM25.load(str(folder), show_progress=False) if self.ids else bm25s.BM25()
            )
        return self


def content_digest(ids: Sequence[str], texts: Sequence[str]) -> str:
    """A digest of ``(id, text)`` pairs in id order: equal digests, equal indexed content.

    Example:
        >>> content_digest(["b", "a"], ["y", "x"]) == content_digest(["a", "b"], ["x", "y"])
        True

    """
    digest = hashlib.sha256()
    for id_, text in sorted(zip(ids, texts)):
        digest.update(json.dumps([id_, text], ensure_ascii=False).encode())
    return digest.hexdigest()


def _bm25s() -> Any:
    """bm25s, imported through the optional-import helper, logging as the application says.

    bm25s sets its own logger to DEBUG when imported, which prints a line per index build
    wherever logging is configured; the logger is handed back to the application's levels.
    """
    bm25s = require("bm25s", "retrieval")
    log = logging.getLogger("bm25s")
    if log.level == logging.DEBUG:
        log.setLevel(logging.NOTSET)
    return bm25s


def _lock(folder: Path) -> FileLock:
    return FileLock(str(folder.with_name(folder.name + ".lock")), timeout=60)

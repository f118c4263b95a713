"""The PromptReps channel: documents' sparse vectors as one scipy CSR matrix, dot-product search."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse


class SparseIndex:
    """Documents' PromptReps vectors (``PromptEmbedder.embed_sparse``) searched by dot product.

    Args:
        ids: Document ids, one per row.
        matrix: ``(n, vocab)`` CSR matrix of non-negative weights.
        digests: Per row, a digest of the text it was made from (a store's side keeps
            them to re-embed only changed chunks).
        key: What the rows depend on (a store's side: its vectors' identity).

    Example:
        >>> import scipy.sparse
        >>> m = scipy.sparse.csr_matrix(np.array([[0, 1.0, 0], [2.0, 0, 0]], np.float32))
        >>> SparseIndex(["a", "b"], m).search(scipy.sparse.csr_matrix([[1.0, 0, 0]]), 5)
        [('b', 2.0)]

    """

    def __init__(
        self,
        ids: Sequence[str],
        matrix: scipy.sparse.spmatrix,
        *,
        digests: Sequence[str] | None = None,
        key: str | None = None,
    ) -> None:
        if len(ids) != matrix.shape[0]:
            raise ValueError(f"{len(ids)} ids for {matrix.shape[0]} rows")
        if digests is not None and len(digests) != len(ids):
            raise ValueError(f"{len(digests)} digests for {len(ids)} ids")
        self.ids = list(ids)
        self.matrix = matrix.tocsr().astype(np.float32)
        self.digests = list(digests) if digests is not None else None
        self.key = key

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, queries: scipy.sparse.spmatrix) -> np.ndarray:
        """``(n_queries, n_docs)`` dot products."""
        return np.asarray((queries @ self.matrix.T).todense(), dtype=np.float32)

    def search(self, query: scipy.sparse.spmatrix, k: int) -> list[tuple[str, float]]:
        """The best ``k`` documents with a positive score for one query row, best first."""
        if not self.ids:
            return []
        return top_hits(self.scores(query)[0], self.ids, k)

    def save(self, path: str | Path) -> None:
        """Write ``<path>.npz`` (matrix, ids, digests, key) atomically."""
        path = npz_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            m = self.matrix
            meta = {"ids": self.ids, "digests": self.digests, "key": self.key}
            ids = np.array([json.dumps(meta, ensure_ascii=False)])
            np.savez(tmp, data=m.data, indices=m.indices, indptr=m.indptr, shape=m.shape, ids=ids)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> SparseIndex:
        """Read an index written by :meth:`save`."""
        import scipy.sparse

        with np.load(npz_path(path), allow_pickle=False) as z:
            matrix = scipy.sparse.csr_matrix(
                (z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"])
            )
            meta = json.loads(str(z["ids"][0]))
        if isinstance(meta, list):  # written before digests and keys
            return cls(meta, matrix)
        return cls(meta["ids"], matrix, digests=meta["digests"], key=meta["key"])


def npz_path(path: str | Path) -> Path:
    """``path`` ending in ``.npz`` (appended, so a dotted collection name stays whole).

    Example:
        >>> npz_path("side/my.docs").name, npz_path("side/docs.npz").name
        ('my.docs.npz', 'docs.npz')

    """
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def top_hits(
    scores: np.ndarray, ids: Sequence[str], k: int, positive: bool = True
) -> list[tuple[str, float]]:
    """The ``k`` best scores of one row as ``(id, score)``, best first.

    With ``positive``, documents scoring 0 or less (nothing in common) are left out.
    """
    k = min(k, len(scores))
    if k == 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(ids[j], float(scores[j])) for j in top if scores[j] > 0 or not positive]

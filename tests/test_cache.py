import numpy as np
import pytest

from promptembed import PromptEmbedder


def count_forward_rows(monkeypatch) -> list[int]:
    """Record the batch sizes that reach the model."""
    from promptembed.forward import LayerForward

    calls: list[int] = []
    real = LayerForward.__call__

    def spy(self, batch, **kwargs):
        calls.append(len(batch))
        return real(self, batch, **kwargs)

    monkeypatch.setattr(LayerForward, "__call__", spy)
    return calls


def test_cache_skips_recomputation_and_returns_same_vectors(tmp_path, model_dirs, monkeypatch):
    cache = str(tmp_path / "cache")
    emb = PromptEmbedder(str(model_dirs["llama"]), device="cpu", embedding_cache=cache)
    calls = count_forward_rows(monkeypatch)
    first = emb.embed(["a", "b", "c"])
    assert sum(calls) == 3
    again = emb.embed(["b", "new", "a"])
    assert sum(calls) == 4  # only "new" was computed
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[2], first[0])


def test_cache_survives_a_new_embedder_but_not_a_new_template(tmp_path, model_dirs):
    cache = str(tmp_path / "cache")
    path = str(model_dirs["llama"])
    first = PromptEmbedder(path, device="cpu", embedding_cache=cache).embed(["hello"])
    same = PromptEmbedder(path, device="cpu", embedding_cache=cache).embed(["hello"])
    np.testing.assert_array_equal(first, same)
    other = PromptEmbedder(path, device="cpu", template="eol", embedding_cache=cache)
    plain = PromptEmbedder(path, device="cpu", template="eol")
    np.testing.assert_allclose(other.embed(["hello"]), plain.embed(["hello"]), atol=1e-6)


def test_cache_off_by_default(embedder_factory):
    routes = embedder_factory("llama")._routes.values()
    assert all(r.cache is None for members in routes for r in members)


def test_in_memory_model_cannot_use_cache(model_dirs, tokenizer, tmp_path):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dirs["llama"])
    with pytest.raises(ValueError, match="no fingerprint"):
        PromptEmbedder.from_model(model, tokenizer, embedding_cache=str(tmp_path))


# -- the cache holds data, never code ---------------------------------------------------------


class _Planted:
    """Unpickling this would create ``marker``: the attack the cache must not fall for."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _rows(cache_dir) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(cache_dir / "vectors.sqlite3") as db:
        return db.execute("SELECT key, dtype, shape, sha256, data FROM vectors").fetchall()


def _overwrite(cache_dir, data: bytes, sha256: str | None = None) -> None:
    import hashlib
    import sqlite3

    digest = sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
    with sqlite3.connect(cache_dir / "vectors.sqlite3") as db:
        db.execute("UPDATE vectors SET data = ?, sha256 = ?", (data, digest))


def test_planted_pickle_never_runs_and_is_a_logged_miss_then_rewritten(
    tmp_path, model_dirs, caplog
):
    import pickle

    cache_dir = tmp_path / "cache"
    path = str(model_dirs["llama"])
    plain = PromptEmbedder(path, device="cpu").embed(["hello"])
    PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir)).embed(["hello"])
    (good,) = _rows(cache_dir)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Planted(str(marker)))
    # Both with a matching checksum (a planter can compute one) and without.
    for digest in (None, "0" * 64):
        _overwrite(cache_dir, payload, digest)
        # The pre-SQLite format (diskcache) under the same directory is never read either.
        diskcache = pytest.importorskip("diskcache")
        with diskcache.Cache(str(cache_dir)) as old:
            old.set(good[0], _Planted(str(marker)))
        emb = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir))
        with caplog.at_level("WARNING", logger="promptembed.cache"):
            got = emb.embed(["hello"])
        assert not marker.exists()
        np.testing.assert_allclose(got, plain, atol=1e-6)
        assert "corrupt" in caplog.text
        assert _rows(cache_dir) == [good]  # rewritten with the recomputed vector


@pytest.mark.parametrize("damage", ["nan", "short", "dtype"])
def test_damaged_entry_is_a_miss_not_an_error(tmp_path, model_dirs, damage):
    import sqlite3

    cache_dir = tmp_path / "cache"
    path = str(model_dirs["llama"])
    first = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir)).embed(["a"])
    (good,) = _rows(cache_dir)
    if damage == "nan":
        _overwrite(cache_dir, np.full(len(first[0]), np.nan, dtype="<f4").tobytes())
    elif damage == "short":
        _overwrite(cache_dir, good[4][:-4])
    else:
        with sqlite3.connect(cache_dir / "vectors.sqlite3") as db:
            db.execute("UPDATE vectors SET dtype = '|O'")
    again = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir)).embed(["a"])
    np.testing.assert_array_equal(again, first)
    assert _rows(cache_dir) == [good]


def test_unreadable_database_is_set_aside(tmp_path, model_dirs):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o700)
    (cache_dir / "vectors.sqlite3").write_bytes(b"not a database at all" * 100)
    path = str(model_dirs["llama"])
    got = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir)).embed(["x"])
    np.testing.assert_allclose(got, PromptEmbedder(path, device="cpu").embed(["x"]), atol=1e-6)
    assert len(_rows(cache_dir)) == 1
    assert any(p.name.startswith("vectors.sqlite3.corrupt-") for p in cache_dir.iterdir())


def test_cache_directory_is_private(tmp_path, model_dirs):
    import os
    import stat

    cache_dir = tmp_path / "new" / "cache"
    PromptEmbedder(str(model_dirs["llama"]), device="cpu", embedding_cache=str(cache_dir))
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache_dir / "vectors.sqlite3").stat().st_mode) == 0o600
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # like a directory under /tmp that anyone may write into
    with pytest.raises(PermissionError, match="chmod 700"):
        PromptEmbedder(str(model_dirs["llama"]), device="cpu", embedding_cache=str(shared))

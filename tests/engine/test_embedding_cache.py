import shutil

import numpy as np
import pytest

from promptembed import PromptEmbedder
from tests.helpers import rewrite_weights


def count_forward_rows(monkeypatch) -> list[int]:
    """Record the batch sizes that reach the model."""
    from promptembed.engine.forward import LayerForward

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
        with caplog.at_level("WARNING", logger="promptembed.engine.cache"):
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


# -- malformed caches never crash a job (issue 21) ---------------------------------------------


def test_a_cache_table_with_an_extra_column_still_reads_and_writes(tmp_path, model_dirs):
    import sqlite3

    cache_dir = tmp_path / "cache"
    path = str(model_dirs["llama"])
    first = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir)).embed(["a"])
    with sqlite3.connect(cache_dir / "vectors.sqlite3") as db:
        db.execute("ALTER TABLE vectors ADD COLUMN note TEXT")
    emb = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir))
    np.testing.assert_array_equal(emb.embed(["a"]), first)
    emb.embed(["b"])  # a write: before, sqlite3.OperationalError (6 columns, 5 values)
    assert len(_rows(cache_dir)) == 2


def test_a_required_extra_column_makes_writes_a_logged_miss(tmp_path, model_dirs, caplog):
    import sqlite3

    cache_dir = tmp_path / "cache"
    path = str(model_dirs["llama"])
    PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir)).embed(["a"])
    with sqlite3.connect(cache_dir / "vectors.sqlite3") as db:
        db.execute("ALTER TABLE vectors ADD COLUMN owner TEXT NOT NULL DEFAULT 'x'")
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON vectors BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
    emb = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir))
    with caplog.at_level("WARNING", logger="promptembed.engine.cache"):
        got = emb.embed(["new text"])
    np.testing.assert_allclose(
        got, PromptEmbedder(path, device="cpu").embed(["new text"]), atol=1e-6
    )
    assert "not written" in caplog.text


def test_values_beyond_float32_with_valid_checksums_are_a_miss(tmp_path, model_dirs):
    cache_dir = tmp_path / "cache"
    path = str(model_dirs["llama"])
    first = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir)).embed(["a"])
    (good,) = _rows(cache_dir)
    _overwrite(cache_dir, np.full(len(first[0]), 3e38, dtype="<f4").tobytes())  # valid sha
    again = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir)).embed(["a"])
    assert np.abs(again).sum() > 0  # before: all zeros, no error
    np.testing.assert_array_equal(again, first)
    assert _rows(cache_dir) == [good]


def test_a_cache_file_that_is_a_symlink_or_world_writable_is_refused(tmp_path, model_dirs):
    import os

    path = str(model_dirs["llama"])
    elsewhere = tmp_path / "elsewhere.sqlite3"
    elsewhere.write_bytes(b"")
    os.chmod(elsewhere, 0o666)
    linked = tmp_path / "linked"
    linked.mkdir(mode=0o700)
    (linked / "vectors.sqlite3").symlink_to(elsewhere)
    with pytest.raises(PermissionError, match="symbolic link"):
        PromptEmbedder(path, device="cpu", embedding_cache=str(linked))
    open_file = tmp_path / "open"
    open_file.mkdir(mode=0o700)
    (open_file / "vectors.sqlite3").write_bytes(b"")
    os.chmod(open_file / "vectors.sqlite3", 0o666)
    with pytest.raises(PermissionError, match="chmod 600"):
        PromptEmbedder(path, device="cpu", embedding_cache=str(open_file))


def test_a_cache_locked_by_another_process_is_a_miss_not_an_error(
    tmp_path, model_dirs, caplog, monkeypatch
):
    import gc
    import sqlite3

    import promptembed.engine.cache as cache_module

    monkeypatch.setattr(cache_module, "_BUSY_SECONDS", 0.2)
    cache_dir = tmp_path / "cache"
    path = str(model_dirs["llama"])
    plain = PromptEmbedder(path, device="cpu").embed(["a", "b"])
    first = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir))
    first.embed(["a"])
    del first
    gc.collect()  # its connection closes with it
    holder = sqlite3.connect(cache_dir / "vectors.sqlite3", isolation_level=None, timeout=10)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # as another process holding it for minutes would
    try:
        emb = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir))
        with caplog.at_level("WARNING", logger="promptembed.engine.cache"):
            got = emb.embed(["a", "b"])
    finally:
        holder.rollback()
        holder.close()
    np.testing.assert_allclose(got, plain, atol=1e-6)
    assert "locked" in caplog.text or "unreadable" in caplog.text
    assert not any(p.name.startswith("vectors.sqlite3.corrupt-") for p in cache_dir.iterdir())


def test_a_pass_interrupted_midway_keeps_the_slices_it_finished(tmp_path, model_dirs, monkeypatch):
    from promptembed.engine import embedder as module

    monkeypatch.setattr(module, "_CACHE_SLICE", 2)
    cache = str(tmp_path / "cache")
    texts = [f"sentence number {i}" for i in range(6)]
    emb = PromptEmbedder(str(model_dirs["llama"]), device="cpu", embedding_cache=cache)
    want = PromptEmbedder(str(model_dirs["llama"]), device="cpu").embed(texts)
    real, calls = emb._compute, []

    def killed_on_the_third_slice(route, items, *args):
        calls.append(len(items))
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(route, items, *args)

    monkeypatch.setattr(emb, "_compute", killed_on_the_third_slice)
    with pytest.raises(KeyboardInterrupt):
        emb.embed(texts)
    rows = count_forward_rows(monkeypatch)
    again = PromptEmbedder(str(model_dirs["llama"]), device="cpu", embedding_cache=cache)
    np.testing.assert_allclose(again.embed(texts), want, atol=1e-5)
    assert sum(rows) == 2  # only the slice the interruption lost was computed again


def test_truncation_is_warned_once_per_call_not_once_per_cache_slice(
    tmp_path, model_dirs, monkeypatch
):
    import warnings

    from promptembed.engine import embedder as module

    monkeypatch.setattr(module, "_CACHE_SLICE", 2)
    emb = PromptEmbedder(
        str(model_dirs["llama"]),
        device="cpu",
        template="eol",
        max_length=20,
        embedding_cache=str(tmp_path / "c"),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb.embed(
            [f"a rather long sentence number {i} that runs past eight tokens" for i in range(5)]
        )
    messages = [str(w.message) for w in caught if "truncated" in str(w.message)]
    assert messages == [
        "5 of 5 texts were truncated to fit max_length=20 tokens (the template's suffix is kept)"
    ]


PAIRS = [
    (q, p)
    for q in ("where do bees keep honey", "how hot is tea water", "绿茶的水温")
    for p in ("Bees store honey in wax cells.", "Brew green tea at 80 degrees.", "A hive.")
]


def _scored(emb, monkeypatch) -> list[int]:
    """Record how many pairs each call of the scoring loop was asked to score."""
    real, asked = emb._scored_pairs, []

    def counting(checked, passages, todo, *args):
        asked.append(len(todo))
        return real(checked, passages, todo, *args)

    monkeypatch.setattr(emb, "_scored_pairs", counting)
    return asked


def test_reranking_scores_are_kept_and_a_rerun_scores_nothing(tmp_path, model_dirs, monkeypatch):
    cache = str(tmp_path / "cache")
    plain = PromptEmbedder(str(model_dirs["llama"]), device="cpu").pair_likelihoods(PAIRS)
    first = PromptEmbedder(str(model_dirs["llama"]), device="cpu", embedding_cache=cache)
    np.testing.assert_array_equal(first.pair_likelihoods(PAIRS), plain)
    again = PromptEmbedder(str(model_dirs["llama"]), device="cpu", embedding_cache=cache)
    asked = _scored(again, monkeypatch)
    np.testing.assert_array_equal(again.pair_likelihoods(PAIRS[::-1]), plain[::-1])
    assert asked == [0]
    # Another passage cut, or another prompt, is another score: computed, never served.
    again.pair_likelihoods(PAIRS, max_passage_tokens=4)
    again.pair_likelihoods(PAIRS, prompt="en")  # "auto" gave the Chinese query "zh"
    assert asked == [0, len(PAIRS), 3]


def test_an_interrupted_rerank_keeps_the_scores_it_stored(tmp_path, model_dirs, monkeypatch):
    from promptembed.engine import embedder as module

    monkeypatch.setattr(module, "_CACHE_SLICE", 4)
    cache = str(tmp_path / "cache")
    emb = PromptEmbedder(str(model_dirs["llama"]), device="cpu", embedding_cache=cache)
    real, yielded = emb._scored_pairs, []

    def killed_after_two_batches(*args):
        for item in real(*args):
            if len(yielded) == 2:
                raise KeyboardInterrupt("killed")
            yielded.append(len(item[0]))
            yield item

    monkeypatch.setattr(emb, "_scored_pairs", killed_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        emb.pair_likelihoods(PAIRS, batch_size=2)
    assert sum(yielded) == 4  # the first slice of 4 scores was stored before the kill
    again = PromptEmbedder(str(model_dirs["llama"]), device="cpu", embedding_cache=cache)
    asked = _scored(again, monkeypatch)
    want = PromptEmbedder(str(model_dirs["llama"]), device="cpu").pair_likelihoods(PAIRS)
    np.testing.assert_array_equal(again.pair_likelihoods(PAIRS), want)
    assert asked == [len(PAIRS) - 4]


def test_reranking_scores_are_shared_by_configs_of_one_model_only(
    tmp_path, model_dirs, monkeypatch
):
    cache = str(tmp_path / "cache")
    PromptEmbedder(str(model_dirs["llama"]), device="cpu", embedding_cache=cache).pair_likelihoods(
        PAIRS
    )
    # Other templates, the same language model: its scores are the same, so they are served.
    other = PromptEmbedder(
        str(model_dirs["llama"]), device="cpu", template="eol", max_length=32, embedding_cache=cache
    )
    asked = _scored(other, monkeypatch)
    other.pair_likelihoods(PAIRS)
    # Other weights: scored afresh.
    changed = tmp_path / "model"
    shutil.copytree(model_dirs["llama"], changed)
    rewrite_weights(changed, seed=3)
    fresh = PromptEmbedder(str(changed), device="cpu", embedding_cache=cache)
    asked_fresh = _scored(fresh, monkeypatch)
    fresh.pair_likelihoods(PAIRS)
    assert asked == [0] and asked_fresh == [len(PAIRS)]


def test_a_passing_database_error_leaves_a_good_cache_in_place(
    tmp_path, model_dirs, monkeypatch, caplog
):
    import sqlite3

    from promptembed.engine import cache as module

    cache_dir = tmp_path / "cache"
    path = str(model_dirs["llama"])
    first = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir)).embed(["a"])
    real = sqlite3.connect

    class Failing:
        def __init__(self, db):
            self.db = db

        def execute(self, sql, *args):
            if sql.startswith("PRAGMA"):
                raise sqlite3.OperationalError("disk I/O error")
            return self.db.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.db, name)

    monkeypatch.setattr(module.sqlite3, "connect", lambda *a, **kw: Failing(real(*a, **kw)))
    with caplog.at_level("WARNING", logger="promptembed.engine.cache"):
        got = PromptEmbedder(path, device="cpu", embedding_cache=str(cache_dir)).embed(["a"])
    np.testing.assert_allclose(got, first, atol=1e-6)
    assert "cannot be used now" in caplog.text
    assert not any(p.name.startswith("vectors.sqlite3.corrupt-") for p in cache_dir.iterdir())
    monkeypatch.setattr(module.sqlite3, "connect", real)
    assert len(_rows(cache_dir)) == 1  # the cache kept its entry

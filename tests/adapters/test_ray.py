"""The Ray path: a local Ray with 2 CPU actors writing into a real ``chroma run`` server."""

from __future__ import annotations

import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import QUIET_ENV, run_python

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
chromadb = pytest.importorskip("chromadb")
pytest.importorskip("llama_index.core")

from typer.testing import CliRunner  # noqa: E402

from promptembed.cli import app  # noqa: E402
from promptembed.config import IndexConfig, RayConfig, load_config  # noqa: E402
from promptembed.ingest.pipeline import index_paths as index_in_process  # noqa: E402
from promptembed.ingest.planning import plan_corpus  # noqa: E402
from promptembed.ray import _EmbedAndWrite, _pool, embed_dataset, index_paths, write_dataset  # noqa: E402
from promptembed.store.function import open_checked_collection  # noqa: E402
from promptembed.store.guard import EmbedderConflictError  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts whatever the main thread waits on."""

    def expired(signum, frame):
        raise TimeoutError(f"the Ray run took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs and no dashboard, shared by this module; always shut down."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in QUIET_ENV.items():
            env.setenv(key, value)  # inherited by the Ray workers
        env.delenv("RAY_ADDRESS", raising=False)
        ray.shutdown()
        try:
            with deadline(120):
                ray.init(
                    num_cpus=2,
                    num_gpus=0,
                    include_dashboard=False,
                    log_to_driver=False,
                    object_store_memory=200 * 1024 * 1024,
                    configure_logging=False,
                )
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            # Deterministic spread for the "both actors wrote" check: start dispatching once
            # both actors are up (bounded), and hand each actor one batch at a time.
            # Generous: on a loaded 2-core machine two actors importing torch take minutes.
            context.wait_for_min_actors_s = 420
            context.max_tasks_in_flight_per_actor = 1
            yield
        finally:
            ray.shutdown()


def _config(model_dir: Path, port: int, collection: str, **embedder) -> dict:
    return {
        "embedder": {"model": str(model_dir), "device": "cpu", **embedder},
        "store": {"host": "127.0.0.1", "port": port, "collection": collection},
        "ray": {"num_workers": 2, "batch_size": 4, "num_gpus_per_worker": 0},
    }


def _contents(port: int, collection: str) -> dict[str, tuple[np.ndarray, dict, str]]:
    col = chromadb.HttpClient(host="127.0.0.1", port=port).get_collection(
        collection, embedding_function=None
    )
    got = col.get(include=["embeddings", "metadatas", "documents"])
    assert len(got["ids"]) == len(set(got["ids"])) == col.count()
    return {
        id_: (np.asarray(vec), meta, doc)
        for id_, vec, meta, doc in zip(
            got["ids"], got["embeddings"], got["metadatas"], got["documents"]
        )
    }


def _assert_same(ray_side: dict, in_process: dict) -> None:
    assert sorted(ray_side) == sorted(in_process)
    for id_, (vector, meta, doc) in ray_side.items():
        ref_vector, ref_meta, ref_doc = in_process[id_]
        assert meta == ref_meta and doc == ref_doc
        np.testing.assert_allclose(vector, ref_vector, atol=1e-5)


@pytest.mark.procs
def test_ray_index_equals_in_process_index(
    local_ray, chroma_server, model_dirs, embedder_factory, tmp_path
):
    corpus = tmp_path / "corpus"
    shutil.copytree(EXAMPLES / "corpus", corpus)
    # Keys are relative to the TOML's folder in the CLI run below: the same root here.
    cfg = _config(model_dirs["llama"], chroma_server, "on-ray")
    ref_cfg = _config(model_dirs["llama"], chroma_server, "in-process")
    embedder = embedder_factory("llama")
    plan = plan_corpus([corpus], IndexConfig(), root=tmp_path)
    assert len(plan) > 2 * cfg["ray"]["batch_size"]  # several batches for 2 actors

    with deadline(600):
        first = index_paths([corpus], cfg, root=tmp_path)
    assert first.chunks == first.embedded == len(plan) and first.deleted == 0
    assert first.workers == 2  # both actors of the pool embedded and wrote
    on_ray = _contents(chroma_server, "on-ray")
    assert sorted(on_ray) == sorted(c.id for c in plan)  # count and ids: the plan's

    index_in_process([corpus], ref_cfg, embedder=embedder, root=tmp_path)
    _assert_same(on_ray, _contents(chroma_server, "in-process"))

    # Rerun through the CLI flag: nothing to embed, nothing duplicated.
    toml = tmp_path / "ray.toml"
    toml.write_text(
        f'[embedder]\nmodel = "{model_dirs["llama"].as_posix()}"\ndevice = "cpu"\n'
        f'[store]\nhost = "127.0.0.1"\nport = {chroma_server}\ncollection = "on-ray"\n'
        "[ray]\nnum_gpus_per_worker = 0\nbatch_size = 4\n",
        encoding="utf-8",
    )
    with deadline(120):
        again = CliRunner().invoke(
            app, ["index", str(corpus), "--config", str(toml), "--ray", "--ray-workers", "2"]
        )
    assert again.exit_code == 0, again.output
    said = " ".join(again.output.split())  # rich wraps long lines
    assert " 0 embedded" in said and "10 unchanged" in said, said
    assert _contents(chroma_server, "on-ray").keys() == on_ray.keys()

    # A changed file: only its new chunks are embedded, its stale ones removed.
    changed = corpus / "lighthouses.txt"
    changed.write_text("Lighthouses warn ships of rocks. " + changed.read_text(encoding="utf-8"))
    new_plan = plan_corpus([corpus], IndexConfig(), root=tmp_path)
    new_ids = {c.id for c in new_plan} - set(on_ray)
    with deadline(600):
        third = index_paths([corpus], cfg, root=tmp_path)
    assert third.embedded == len(new_ids) > 0 and third.deleted > 0
    assert third.unchanged_files == 9
    index_in_process([corpus], ref_cfg, embedder=embedder, root=tmp_path)
    final = _contents(chroma_server, "on-ray")
    assert sorted(final) == sorted(c.id for c in new_plan)
    _assert_same(final, _contents(chroma_server, "in-process"))

    # A deleted file, pruned: the same run as in-process (nothing to embed, no Ray).
    (corpus / "lighthouses.txt").unlink()
    pruned = index_paths([corpus], cfg, root=tmp_path, prune=True)
    assert pruned.pruned > 0 and pruned.embedded == pruned.workers == 0
    index_in_process([corpus], ref_cfg, embedder=embedder, root=tmp_path, prune=True)
    final = _contents(chroma_server, "on-ray")
    assert sorted(final) == sorted(c.id for c in plan_corpus([corpus], root=tmp_path))
    _assert_same(final, _contents(chroma_server, "in-process"))

    # Another embedder on the same collection: refused on the driver, nothing written.
    bad = _config(model_dirs["llama"], chroma_server, "on-ray", template="eol")
    with pytest.raises(EmbedderConflictError, match="differs in"):
        index_paths([corpus], bad, root=tmp_path)
    assert _contents(chroma_server, "on-ray").keys() == final.keys()


@pytest.mark.procs
def test_embed_dataset_and_write_dataset(local_ray, chroma_server, model_dirs, embedder_factory):
    docs = ["The cat sat on the mat.", "Stocks fell sharply on Monday.", "一个孩子在骑马。"]
    cfg = _config(model_dirs["llama"], chroma_server, "rows")
    cfg["ray"] = {"num_workers": 1, "num_gpus_per_worker": 0}
    embedder = embedder_factory("llama")
    expected = embedder.embed(docs)
    # d0 is already stored (by the in-process path): the actors must skip it.
    _, col, _ = open_checked_collection(cfg, embedder)
    col.upsert(ids=["d0"], embeddings=expected[:1], documents=docs[:1], metadatas=[{"lang": "x"}])
    ds = ray.data.from_items([{"id": f"d{i}", "text": t, "lang": "x"} for i, t in enumerate(docs)])
    with deadline(600):
        rows = sorted(embed_dataset(ds, cfg).take_all(), key=lambda r: r["id"])
        np.testing.assert_allclose(np.stack([r["embedding"] for r in rows]), expected, atol=1e-5)
        stats = write_dataset(ds, cfg)
    assert (stats.rows, stats.embedded, stats.skipped, stats.workers) == (3, 2, 1, 1)
    stored = _contents(chroma_server, "rows")
    assert sorted(stored) == ["d0", "d1", "d2"] and stored["d2"][1:] == ({"lang": "x"}, docs[2])
    np.testing.assert_allclose(
        np.stack([stored[f"d{i}"][0] for i in range(3)]), expected, atol=1e-5
    )

    # The actor class itself, in-process: rows without metadata columns are written too.
    writer = _EmbedAndWrite(load_config(cfg), "id", "text", [], skip_existing=True)
    batch = {"id": np.array(["e0", "d1"]), "text": np.array(["no metadata", docs[1]])}
    out = writer(batch)
    assert (int(out["embedded"][0]), int(out["skipped"][0])) == (1, 1)
    assert _contents(chroma_server, "rows")["e0"][1:] == (None, "no metadata")


@pytest.mark.procs
def test_pool_slots_and_store_checks(local_ray, model_dirs, tmp_path):
    embedder = load_config({}).embedder
    pool = _pool(RayConfig(num_workers=2, num_gpus_per_worker=0), embedder)
    assert pool["num_cpus"] == 1.0 and "num_gpus" not in pool
    assert pool["compute"].min_size == pool["compute"].max_size == 2
    assert _pool(RayConfig(), embedder)["compute"].min_size == 2  # one per CPU slot
    with pytest.raises(ValueError, match="no GPUs"):
        _pool(RayConfig(num_gpus_per_worker=1), embedder)
    local = {"embedder": {"model": str(model_dirs["llama"])}, "store": {"path": str(tmp_path)}}
    with pytest.raises(ValueError, match="Chroma server"):
        index_paths([EXAMPLES / "corpus"], local)


@pytest.mark.procs
def test_import_is_light_and_missing_ray_is_named():
    code = """
import sys
import promptembed, promptembed.cli, promptembed.ingest.pipeline
assert "ray" not in sys.modules, "importing promptembed imported ray"
sys.modules["ray"] = None  # as if the extra were not installed
try:
    import promptembed.ray
except ImportError as error:
    print(error)
"""
    out = run_python(code, timeout=180).stdout
    assert "pip install 'promptembed[ray]'" in out


def test_ray_config_is_validated():
    cfg = load_config({"ray": {"address": "ray://head:10001", "num_workers": 4}})
    assert cfg.ray.address == "ray://head:10001" and cfg.ray.batch_size == 256
    with pytest.raises(ValueError, match="extra"):
        load_config({"ray": {"workers": 4}})
    with pytest.raises(ValueError):
        load_config({"ray": {"num_workers": 0}})

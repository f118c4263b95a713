"""An adversarial pass over the indexer, the store and the configs, with counts of what held.

Run from the repo root: ``python -m benchmarks.probes.adversarial_pass [--kills 20]``.

On a tiny random Llama (built as the tests build theirs), hybrid mode (dense + BM25):

* **kills**: ``promptembed index --prune`` is SIGKILLed at a random moment, the corpus is
  changed (a file edited, one emptied, one added, one deleted), and the next run must end
  with exactly the corpus in Chroma and the same ids in the BM25 side;
* **concurrent writers**: two ``promptembed index`` processes on one embedded store, at
  once, on two folders; both must end with every chunk stored once;
* **malformed configs**: each must exit 2 with one line and create nothing.

Prints one JSON line with the counts; writes it to ``benchmarks/probes/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import chromadb

from benchmarks.common import build_tiny_llama
from promptembed.config import load_config
from promptembed.ingest.planning import plan_corpus
from promptembed.retrieval.hybrid import lexical_folder
from promptembed.retrieval.lexical import LexicalIndex

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-c", "from promptembed.cli import app; app()"]


def _write_corpus(folder: Path, rng: random.Random, n: int = 12) -> None:
    words = ("bees", "honey", "tea", "bread", "dough", "magma", "ship", "light", "river")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 120)))
        (folder / f"f{i}.txt").write_text(f"Document {i}. {text}.", encoding="utf-8")


def _config(root: Path, model: Path) -> Path:
    config = root / "promptembed.toml"
    config.write_text(
        f'[embedder]\nmodel = "{model.as_posix()}"\ndevice = "cpu"\nbatch_size = 2\n'
        '[store]\npath = "db"\ncollection = "docs"\n[index]\nchunk_size = 32\nchunk_overlap = 0\n'
        '[retrieval]\nmode = "hybrid"\nweights = { dense = 0.3, bm25 = 0.7 }\n'
    )
    return config


def _exact(root: Path, config: Path, folders: list[Path]) -> bool:
    """Chroma holds exactly the corpus, and BM25 exactly Chroma's ids."""
    cfg = load_config(config)
    want = {c.id for f in folders for c in plan_corpus([f], cfg.index, root=root)}
    col = chromadb.PersistentClient(str(root / "db")).get_collection("docs")
    got = set(col.get(include=[])["ids"])
    lexical = set(LexicalIndex.load(lexical_folder(cfg)).ids)
    return got == want and lexical == got


def _mutate(corpus: Path, rng: random.Random) -> None:
    files = sorted(corpus.iterdir())
    rng.choice(files).write_text(f"Edited at {time.time()}: bees and tea.", encoding="utf-8")
    rng.choice(files).write_text("", encoding="utf-8")
    (corpus / f"new{rng.randint(0, 10**6)}.txt").write_text("A new river stone note.")
    victim = rng.choice(sorted(corpus.iterdir()))
    victim.unlink()


def kills(model: Path, n: int, rng: random.Random) -> tuple[int, int]:
    root = Path(tempfile.mkdtemp(prefix="pe-kills-"))
    corpus = root / "corpus"
    _write_corpus(corpus, rng)
    config = _config(root, model)
    held = 0
    for _ in range(n):
        _mutate(corpus, rng)
        proc = subprocess.Popen([*CLI, "index", str(corpus), "--prune", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.5, 6.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        rerun = subprocess.run(
            [*CLI, "index", str(corpus), "--prune", "--config", str(config)], capture_output=True
        )
        held += rerun.returncode == 0 and _exact(root, config, [corpus])
    shutil.rmtree(root, ignore_errors=True)
    return held, n


def concurrent_writers(model: Path, n: int, rng: random.Random) -> tuple[int, int]:
    held = 0
    for _ in range(n):
        root = Path(tempfile.mkdtemp(prefix="pe-writers-"))
        a, b = root / "a", root / "b"
        _write_corpus(a, rng, 6)
        _write_corpus(b, rng, 6)
        config = _config(root, model)
        procs = [
            subprocess.Popen(
                [*CLI, "index", str(f), "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for f in (a, b)
        ]
        codes = [p.wait() for p in procs]
        # The loser of the lock may time out (embedded Chroma is single-process); it then
        # exits 2 with one line, and a rerun completes the store.
        for code, folder in zip(codes, (a, b)):
            if code != 0:
                subprocess.run([*CLI, "index", str(folder), "--config", str(config)], check=False)
        held += _exact(root, config, [a, b])
        shutil.rmtree(root, ignore_errors=True)
    return held, n


BAD = [
    '[store]\npath = "db"\ncollection = "a b c"\n',
    '[store]\npath = "db"\ncollection = "../../escape"\n',
    '[store]\npath = "db"\ncollection = "abc/def"\n',
    '[store]\npath = "db"\ncollection = "docs"\n[retrieval]\nmode = "hybrid"\n'
    'stemmer = "klingon"\n',
    '[store]\npath = "db"\ncollection = "docs"\n[index]\nchunk_size = 32\nchunk_overlap = 100\n',
    '[store]\npath = "db"\ncollection = "docs"\n[retrieval]\nmode = "hybrid"\n'
    "weights = { dense = nan, bm25 = 1 }\n",
    '[store]\npath = "db"\ncollection = "docs"\n[retrieval]\nmode = "hybrid"\n'
    "weights = { dense = 1, bm25 = inf }\n",
]
BAD_EMBEDDER = [
    "layer = 1000\n",
    "layer = -1000\n",
    "max_length = 8\n",
    "contrastive = [1000, 1.0]\n",
    "token_prepending = [1, 1000]\n",
    'model_kwargs = { attn_implementation = "bogus" }\n',
    'embedding_cache = "afile"\n',
]


def malformed_configs(model: Path) -> tuple[int, int]:
    held = total = 0
    cases = [(model, "", b) for b in BAD] + [
        (model, e, '[store]\npath = "db"\ncollection = "docs"\n') for e in BAD_EMBEDDER
    ]
    cases += [(Path("/no/such/model"), "", '[store]\npath = "db"\ncollection = "docs"\n')]
    for chosen, extra, tail in cases:
        root = Path(tempfile.mkdtemp(prefix="pe-bad-"))
        (root / "corpus").mkdir()
        (root / "corpus" / "a.txt").write_text("Bees make honey.")
        (root / "afile").write_text("x")
        (root / "c.toml").write_text(
            f'[embedder]\nmodel = "{chosen.as_posix()}"\ndevice = "cpu"\n{extra}{tail}'
        )
        out = subprocess.run(
            [*CLI, "index", str(root / "corpus"), "--config", str(root / "c.toml")],
            capture_output=True, text=True,
        )  # fmt: skip
        lines = [x for x in out.stdout.splitlines() + out.stderr.splitlines() if x.strip()]
        clean = sorted(p.name for p in root.iterdir()) == ["afile", "c.toml", "corpus"]
        held += (
            out.returncode == 2 and clean and len([x for x in lines if x.startswith("error:")]) == 1
        )
        total += 1
        shutil.rmtree(root, ignore_errors=True)
    return held, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    model = Path(tempfile.mkdtemp(prefix="pe-model-")) / "tiny"
    build_tiny_llama(model)
    result = {
        "kills": kills(model, args.kills, rng),
        "concurrent_writers": concurrent_writers(model, args.writers, rng),
        "malformed_configs": malformed_configs(model),
        "load_average": os.getloadavg()[0],
    }
    line = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in result.items()})
    print(line)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "adversarial-pass.json").write_text(line + "\n")


if __name__ == "__main__":
    main()

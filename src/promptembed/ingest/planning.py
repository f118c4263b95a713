"""What to index: files found, read, keyed and chunked into a plan."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from promptembed._util.optional import require
from promptembed.config import IndexConfig, load_config
from promptembed.ingest.readers import READERS, Part, Skip, read_parts

if TYPE_CHECKING:
    pass


Outcome = Literal["indexed", "unchanged", "skipped", "failed"]

SUFFIXES = tuple(READERS)  # what has a reader; anything else is reported as skipped


@dataclass(frozen=True)
class Chunk:
    """One chunk of one source file.

    Example:
        >>> chunk_text("notes/a.txt", "Bees dance.")[0].source  # doctest: +SKIP
        'notes/a.txt'

    """

    id: str
    source: str
    index: int
    text: str
    source_hash: str
    namespace: str = ""
    page: int | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        """What is stored next to the chunk in Chroma (``page`` only for paged files)."""
        meta: dict[str, Any] = {
            "source": self.source,
            "chunk": self.index,
            "source_hash": self.source_hash,
            "namespace": self.namespace,  # its presence marks today's keys (migration)
        }
        if self.page is not None:
            meta["page"] = self.page
        return meta


@dataclass
class FileOutcome:
    """What happened to one file: ``status`` and, for skips and failures, ``detail``."""

    path: str
    source: str
    status: Outcome = "indexed"
    detail: str = ""
    chunks: int = 0
    embedded: int = 0
    deleted: int = 0


@dataclass
class IndexStats:
    """What an indexing run did, in total and per file (``outcomes``).

    Example:
        >>> index_paths(["corpus"], "promptembed.toml").embedded  # doctest: +SKIP
        0

    """

    files: int = 0
    chunks: int = 0
    embedded: int = 0
    deleted: int = 0
    unchanged_files: int = 0
    pruned: int = 0
    migrated: int = 0
    model_loaded: bool = False  # this run loaded the weights (never when nothing is new)
    sources: list[str] = field(default_factory=list)
    outcomes: list[FileOutcome] = field(default_factory=list)

    def count(self, status: Outcome) -> int:
        """How many files ended with ``status``."""
        return sum(o.status == status for o in self.outcomes)

    @property
    def problems(self) -> list[FileOutcome]:
        """The skipped and failed files (what ``--strict`` refuses)."""
        return [o for o in self.outcomes if o.status in ("skipped", "failed")]


@dataclass(frozen=True)
class Found:
    """A file found under the paths: its key, its pre-0.2 key and where it is."""

    source: str
    path: Path
    legacy: str
    namespace: str = ""


def resolve_root(config: Any, root: str | Path | None = None) -> Path:
    """The folder source keys are relative to (see the module docstring)."""
    if root is not None:
        return Path(root).resolve()
    if isinstance(config, str | Path):
        return Path(config).resolve().parent
    cfg = load_config(config)
    if cfg.store is not None and cfg.store.path is not None:
        return Path(cfg.store.path).expanduser().resolve().parent
    return Path.cwd()


def source_key(file: Path, root: Path) -> str:
    """A file's source key: its POSIX path relative to ``root`` (absolute if none exists)."""
    try:
        return Path(os.path.relpath(file.resolve(), root)).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return file.resolve().as_posix()


def find_files(
    paths: Iterable[str | Path], root: Path | None = None, namespace: str | None = None
) -> list[Found]:
    """Every file under ``paths`` (hidden files and folders excepted), sorted by key.

    Args:
        paths: Files and directories.
        root: Keys are paths relative to it (default: the working directory).
        namespace: Keys are ``<namespace>:<path inside the argument>`` instead.

    Raises:
        FileNotFoundError: A path does not exist.

    """
    root = (root or Path.cwd()).resolve()
    found: dict[str, Found] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = [
                (f, f.relative_to(path).as_posix())
                for f in sorted(path.rglob("*"))
                if f.is_file() and not any(p.startswith(".") for p in f.relative_to(path).parts)
            ]
            legacy_dir = f"{path.resolve().name}/"
        elif path.is_file():
            files, legacy_dir = [(path, path.name)], ""
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
        for file, inside in files:
            key = f"{namespace}:{inside}" if namespace else source_key(file, root)
            found[key] = Found(key, file, legacy_dir + inside, namespace or "")
    return sorted(found.values(), key=lambda f: f.source)


@functools.lru_cache(maxsize=8)
def _splitters(index: IndexConfig) -> tuple[Any, Any]:
    require("llama_index.core", "llama-index")
    from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

    sentences = SentenceSplitter(chunk_size=index.chunk_size, chunk_overlap=index.chunk_overlap)
    return MarkdownNodeParser(), sentences


def chunk_parts(
    source: str, parts: Sequence[Part], index: IndexConfig | None = None, namespace: str = ""
) -> list[Chunk]:
    """Cut one file's parts (pages) into chunks with stable ids."""
    from llama_index.core import Document

    index = index or IndexConfig()
    markdown, sentences = _splitters(index)
    is_markdown = source.lower().endswith((".md", ".markdown"))
    pieces: list[tuple[str, int | None]] = []
    for part in parts:
        sections = [part.text]
        if is_markdown:
            nodes = markdown.get_nodes_from_documents([Document(text=part.text)])
            sections = [n.get_content() for n in nodes]
        pieces += [(c, part.page) for s in sections for c in sentences.split_text(s) if c.strip()]
    whole = "\x0c".join(p.text for p in parts)  # form feed: a page break
    source_hash = hashlib.sha256(whole.encode("utf-8")).hexdigest()
    out = []
    for i, (chunk, page) in enumerate(pieces):
        key = f"{source}\x00{i}\x00{chunk}".encode()
        id_ = hashlib.sha256(key).hexdigest()[:32]
        out.append(Chunk(id_, source, i, chunk, source_hash, namespace, page))
    return out


def chunk_text(source: str, text: str, index: IndexConfig | None = None) -> list[Chunk]:
    """Cut one file's text into chunks with stable ids.

    Example:
        >>> [c.text for c in chunk_text("a.txt", "One. Two.")]  # doctest: +SKIP
        ['One. Two.']

    """
    return chunk_parts(source, [Part(text)], index)


@dataclass
class Plan:
    """The chunks of every readable file and the outcome of every file found."""

    sources: dict[str, list[Chunk]] = field(default_factory=dict)
    outcomes: dict[str, FileOutcome] = field(default_factory=dict)
    legacy: dict[str, str] = field(default_factory=dict)  # source key -> pre-0.2 key


def plan_files(
    paths: Iterable[str | Path],
    index: IndexConfig | None = None,
    *,
    root: Path | None = None,
    namespace: str | None = None,
) -> Plan:
    """Read and chunk every file under ``paths``; unreadable ones get their outcome."""
    plan = Plan()
    for found in find_files(paths, root, namespace):
        outcome = FileOutcome(str(found.path), found.source)
        plan.outcomes[found.source] = outcome
        try:
            chunks = chunk_parts(found.source, read_parts(found.path), index, found.namespace)
        except Skip as skip:
            outcome.status, outcome.detail = "skipped", str(skip)
            continue
        except Exception as error:  # one bad file must not stop the run
            outcome.status, outcome.detail = "failed", f"{type(error).__name__}: {error}"
            continue
        if not chunks:
            outcome.status, outcome.detail = "skipped", "empty"
            continue
        outcome.chunks = len(chunks)
        plan.sources[found.source] = chunks
        plan.legacy[found.source] = found.legacy
    return plan


def plan_sources(
    paths: Iterable[str | Path],
    index: IndexConfig | None = None,
    *,
    root: Path | None = None,
    namespace: str | None = None,
) -> dict[str, list[Chunk]]:
    """The chunks of each indexable file under ``paths``, keyed by source."""
    return plan_files(paths, index, root=root, namespace=namespace).sources


def plan_corpus(
    paths: Iterable[str | Path],
    index: IndexConfig | None = None,
    *,
    root: Path | None = None,
    namespace: str | None = None,
) -> list[Chunk]:
    """Every chunk of every file under ``paths``: what the collection should hold."""
    planned = plan_sources(paths, index, root=root, namespace=namespace)
    return [c for chunks in planned.values() for c in chunks]

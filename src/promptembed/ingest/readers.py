"""File readers for the indexer: a file becomes text parts, or is skipped with a reason.

* ``.md``, ``.markdown``, ``.txt``: bytes decoded as UTF-8 when they are valid UTF-8,
  else with the encoding charset-normalizer detects (Latin-1, UTF-16 with a BOM, ...).
  Bytes that fit no encoding (binary) are skipped, never indexed as garbage.
* ``.pdf``: one part per page (``page`` numbered from 1) through pypdf, behind the
  ``pdf`` extra; without it a PDF is skipped and the reason names the extra.
* ``.html``, ``.htm``: the visible text through BeautifulSoup, behind the ``html`` extra.
* Any other suffix has no reader: :func:`read_parts` raises :class:`Skip`.

Empty (or whitespace-only) files are skipped as ``empty``.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from charset_normalizer import from_bytes

# Wide encodings are only considered when the bytes hold NULs: without, short Latin-1
# texts would otherwise be "detected" as UTF-16 and decoded to CJK noise.
_WESTERN = "cp1252"
_WIDE = ["utf_16", "utf_16_be", "utf_16_le", "utf_32", "utf_32_be", "utf_32_le"]


class Skip(Exception):
    """A file that is deliberately not indexed; ``str(skip)`` is the reason.

    Example:
        >>> try:
        ...     decode_text(b"   ")
        ... except Skip as skip:
        ...     print(skip)
        empty

    """


@dataclass(frozen=True)
class Part:
    """A piece of a file's text, with the page it came from (PDFs only)."""

    text: str
    page: int | None = None


def decode_text(data: bytes) -> str:
    """Decode a text file's bytes: UTF-8 when valid, else the detected encoding.

    Raises:
        Skip: ``empty`` for blank files, or why the bytes are not text.

    Example:
        >>> decode_text("café".encode("utf-16"))
        'café'

    """
    if not data.strip():
        raise Skip("empty")
    text: str | None = None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if b"\x00" not in data:
        with contextlib.suppress(UnicodeDecodeError):
            text = data.decode("utf-8")
    if text is None:
        exclude = [] if b"\x00" in data else _WIDE
        matches = from_bytes(data, cp_exclusion=exclude)
        best = matches.best()
        if best is None:
            raise Skip("not text: no character encoding fits (binary file?)")
        text = str(best)
        # Single-byte Western text fits cp1250/cp1257 as cleanly as cp1252; the detector
        # then guesses among equals. Windows-1252 (a superset of Latin-1's printable
        # range, and what WHATWG decodes "latin-1" as) is by far the likeliest of them.
        for match in matches:
            if _WESTERN in match.could_be_from_charset and match.chaos <= best.chaos + 0.05:
                text = data.decode(_WESTERN)
                break
    if "\x00" in text:
        raise Skip("not text: holds NUL characters (binary file?)")
    if not text.strip():
        raise Skip("empty")
    return text


def read_text(path: Path) -> list[Part]:
    """A text or Markdown file as one part."""
    return [Part(decode_text(path.read_bytes()))]


def read_pdf(path: Path) -> list[Part]:
    """A PDF's text layer, one part per page that has text.

    Raises:
        Skip: Without pypdf (naming the extra), or when no page has a text layer.

    """
    try:
        from pypdf import PdfReader
    except ImportError:
        raise Skip("PDF needs pypdf: pip install 'promptembed[pdf]'") from None
    reader = PdfReader(path)
    parts = [
        Part(text, page)
        for page, text in enumerate((p.extract_text() or "" for p in reader.pages), 1)
        if text.strip()
    ]
    if not parts:
        raise Skip("empty: no page has a text layer (a scanned PDF needs OCR first)")
    return parts


def read_html(path: Path) -> list[Part]:
    """An HTML page's visible text (scripts, styles and markup dropped) through BeautifulSoup.

    Raises:
        Skip: Without beautifulsoup4 (naming the extra), or when no text is left.

    """
    try:
        from bs4 import BeautifulSoup
    except ImportError:
        raise Skip("HTML needs beautifulsoup4: pip install 'promptembed[html]'") from None
    # Bytes in: BeautifulSoup honours the page's declared charset, else detects one.
    soup = BeautifulSoup(path.read_bytes(), "html.parser")
    for hidden in soup(["script", "style", "noscript", "template"]):
        hidden.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    text = "\n".join(line for line in lines if line)
    if not text:
        raise Skip("empty")
    return [Part(text)]


READERS: dict[str, Callable[[Path], list[Part]]] = {
    ".md": read_text,
    ".markdown": read_text,
    ".txt": read_text,
    ".pdf": read_pdf,
    ".html": read_html,
    ".htm": read_html,
}
"""Suffix (lower case) → reader."""


def read_parts(path: Path) -> list[Part]:
    """The text parts of one file, by its suffix.

    Raises:
        Skip: The suffix has no reader, or the file is empty or not text.
        OSError: The file cannot be read (reported as a failure by the indexer).

    """
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise Skip(f"no reader for {path.suffix or 'files without a suffix'} (read: {known})")
    return reader(path)

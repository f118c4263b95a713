"""File readers: text of any common encoding, PDF pages, HTML text; skips with reasons."""

from __future__ import annotations

import sys

import pytest

from promptembed.ingest.readers import Part, Skip, decode_text, read_parts
from tests.helpers import make_pdf


@pytest.mark.parametrize(
    "data",
    [
        "Le café est très chaud, déjà.".encode("latin-1"),
        "Le café est très chaud, déjà.".encode("utf-16"),
        "Le café est très chaud, déjà.".encode("utf-8-sig"),
        "Le café est très chaud, déjà.".encode(),
    ],
    ids=["latin-1", "utf-16", "utf-8-bom", "utf-8"],
)
def test_text_in_common_encodings_decodes_to_the_same_string(data):
    assert decode_text(data) == "Le café est très chaud, déjà."


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty"), (b" \n\t ", "empty"), (bytes(range(256)) * 8, "not text")],
)
def test_empty_and_binary_bytes_are_skipped_with_a_reason(data, reason):
    with pytest.raises(Skip, match=reason):
        decode_text(data)


def test_unknown_types_are_skipped_never_read_as_bytes(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot text")
    with pytest.raises(Skip, match=r"no reader for \.png"):
        read_parts(path)


def test_pdf_pages_keep_their_numbers(tmp_path):
    pytest.importorskip("pypdf")
    path = tmp_path / "manual.PDF"
    path.write_bytes(make_pdf(["First page.", "", "Third page."]))
    assert read_parts(path) == [Part("First page.", 1), Part("Third page.", 3)]


def test_pdf_without_pypdf_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "manual.pdf"
    path.write_bytes(make_pdf(["First page."]))
    monkeypatch.setitem(sys.modules, "pypdf", None)
    with pytest.raises(Skip, match=r"promptembed\[pdf\]"):
        read_parts(path)


def test_html_gives_its_visible_text_in_its_declared_charset(tmp_path):
    pytest.importorskip("bs4")
    path = tmp_path / "page.html"
    path.write_bytes(
        b'<html><head><meta charset="iso-8859-1"><style>p{}</style>'
        b"<script>var x = 1;</script></head><body><h1>Caf\xe9</h1><p>Tr\xe8s bon.</p>"
        b"</body></html>"
    )
    assert read_parts(path) == [Part("Café\nTrès bon.")]

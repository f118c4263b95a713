"""The input rule, in one place: what a text argument may be, and what is refused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_texts(texts: object) -> list[str]:
    """Validate the input of ``embed``: a string or a sequence of strings.

    Raises:
        TypeError: On ``None``, bytes, numbers or any non-string item, naming its index.
        ValueError: On a text the tokenizer cannot encode (a lone surrogate such as
            U+D800), naming its index.

    Example:
        >>> check_texts(["a", "b"])
        ['a', 'b']

    """
    if isinstance(texts, str):
        return check_texts_at([texts], 0)
    if texts is None or isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    return check_texts_at(list(texts), 0)


def check_texts_at(texts: list[Any], offset: int) -> list[str]:
    """Like :func:`check_texts` for a chunk of a stream; error indexes are global."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"texts[{offset + i}] must be str, got {type(text).__name__}: {text!r:.80}"
            )
        if not text.isascii():
            try:
                text.encode("utf-8")  # what a Rust (fast) tokenizer needs
            except UnicodeEncodeError as error:
                raise ValueError(
                    f"texts[{offset + i}] is not valid Unicode text: lone surrogate "
                    f"{text[error.start]!r} at position {error.start} (decode the source "
                    "with errors='replace' or drop it)"
                ) from None
    return texts


def text_list(texts: Any) -> list[str]:
    """The rule for a method that takes many texts: a bare string is refused.

    A ``str`` is a sequence of letters; embedding it as a batch would store one vector
    per letter, so it is refused rather than split.

    Raises:
        TypeError: On a ``str`` (wrap it in a list), bytes, None or non-str items.

    Example:
        >>> text_list(["a"])
        ['a']

    """
    if isinstance(texts, str):
        raise TypeError(
            "expected a list of texts, got one str (it would be embedded letter by letter): "
            "wrap it in a list, e.g. [text], or use the single-text method"
        )
    return check_texts(texts)


def one_text(text: Any) -> str:
    """The rule for a method that takes one text: a list or tuple is refused.

    Raises:
        TypeError: On a list or tuple (use the batch method), or anything not a ``str``.
        ValueError: On a text the tokenizer cannot encode.

    Example:
        >>> one_text("a")
        'a'

    """
    if isinstance(text, (list, tuple)):
        raise TypeError(
            f"expected one text (a str), got a {type(text).__name__} of {len(text)}: "
            "use the batch method (embed_documents, get_text_embedding_batch, ...) for many"
        )
    if not isinstance(text, str):
        raise TypeError(f"expected one text (a str), got {type(text).__name__}")
    return check_texts_at([text], 0)[0]

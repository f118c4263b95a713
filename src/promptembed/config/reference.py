"""The configuration reference, rendered from the pydantic models so it cannot drift.

``python -m promptembed.config.reference > docs/reference/config.md`` regenerates the
committed page; a test fails when the page and the models disagree. Every field must
carry a ``description``: a field without one makes :func:`render` raise, so a new field
cannot ship undocumented.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from promptembed.config.models import Config

COMMAND = "python -m promptembed.config.reference > docs/reference/config.md"

_HEADER = f"""\
# Configuration reference

<!-- Generated from promptembed/config/models.py; do not edit by hand.
     Regenerate: {COMMAND} -->

One TOML file configures every face: the Python API (`load_config(path)`), the CLI
(`--config`), the LangChain, LlamaIndex and Chroma adapters, the server and Ray. Each
section below is one table of that file; every field is optional unless marked
*required*. An unknown field is an error. Relative paths in `[store]`, `[retrieval]`
and the `calibration` file are resolved against the config file's folder. See
[Configuration](../configuration.md) for how the file is used.
"""

# Annotated-types constraint names, as written in the type column.
_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥"}


class MissingDescriptionError(ValueError):
    """A config field has no ``description``: document it in ``config/models.py``."""


def render() -> str:
    """Render the configuration reference as Markdown, one table per config section.

    Returns:
        The text of ``docs/reference/config.md``.

    Raises:
        MissingDescriptionError: If any field of any section lacks a description.

    """
    parts = [_HEADER]
    missing: list[str] = []
    for section, info in Config.model_fields.items():
        model = section_model(info)
        parts.append(_render_section(section, model, info, missing))
        for name, field in model.model_fields.items():  # nested tables: [retrieval.rerank]
            nested = [a for a in _alternatives(field.annotation) if _is_model(a)]
            if nested:
                parts.append(_render_section(f"{section}.{name}", nested[0], field, missing))
    if missing:
        raise MissingDescriptionError(
            "config fields without a description (add Field(..., description=...) in "
            f"promptembed/config/models.py): {', '.join(missing)}"
        )
    return "\n".join(parts)


def section_model(info: FieldInfo) -> type[BaseModel]:
    """The model class of one ``Config`` section (``StoreConfig | None`` → StoreConfig)."""
    models = [arg for arg in _alternatives(info.annotation) if _is_model(arg)]
    if len(models) != 1:
        raise TypeError(f"a Config section must be one model, got {info.annotation!r}")
    return models[0]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _render_section(
    section: str, model: type[BaseModel], info: FieldInfo, missing: list[str]
) -> str:
    lines = [f"## `[{section}]`", ""]
    doc = _docstring(model)
    if doc:
        lines += [doc, ""]
    if not info.is_required() and info.default is None:
        lines += [f"The `[{section}]` table itself is optional: leaving it out means none.", ""]
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if not field.description:
            missing.append(f"{section}.{name}")
            continue
        cells = (f"`{name}`", _type(field), _default(field), _cell(field.description))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _docstring(model: type[BaseModel]) -> str:
    """The class docstring up to its ``Example:`` section, in Markdown."""
    doc = (model.__doc__ or "").strip()
    doc = re.split(r"\n\s*Example:", doc)[0]
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", doc) if p.strip()]
    text = "\n\n".join(paragraphs)
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text)  # :mod:`x` → `x`
    return text.replace("``", "`")


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _type_name(annotation: Any) -> str:
    """A type as a user writes it (``list[str]``, ``"last"``), independent of Python's repr."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " or ".join(f'"{v}"' for v in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{origin.__name__}[{args}]"
    if annotation is Any:
        return "any"
    if annotation is SecretStr:
        return "str (secret)"
    return getattr(annotation, "__name__", str(annotation))


def _type(field: FieldInfo) -> str:
    alternatives = [a for a in _alternatives(field.annotation) if a is not type(None)]
    names = [
        name
        for a in alternatives
        for name in (
            [f'"{v}"' for v in typing.get_args(a)]
            if typing.get_origin(a) is Literal
            else [_type_name(a)]
        )
    ]
    text = " or ".join(f"`{name}`" for name in names)
    bounds = [
        f"{symbol} {getattr(meta, key)}"
        for meta in field.metadata
        for key, symbol in _BOUNDS.items()
        if getattr(meta, key, None) is not None
    ]
    if bounds:
        text += ", " + ", ".join(bounds)
    return _cell(text)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "*required*"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    return f"`{_toml(value)}`"


def _toml(value: Any) -> str:
    """A default as it would be written in the TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return str(value)


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    sys.stdout.buffer.write(render().encode("utf-8"))

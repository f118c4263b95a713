"""Every default the README and docs state is the code's default (issue 21).

Two forms are read from the Markdown: a TOML block whose table line says "these are the
defaults" (every key in it must equal the model's default), and a comment naming a
default in place, ``# "dense" (default)``. docs/reference/config.md is generated from the
models (tests/config/test_reference.py), so it cannot drift.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from promptembed.config import Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```toml\n(.*?)```", re.S)
TABLE = re.compile(r"^\[(\w+)\]([^\n]*)\n(.*?)(?=^\[|\Z)", re.M | re.S)
IN_PLACE = re.compile(r'^(\w+)\s*=.*#\s*"([^"]+)" \(default\)', re.M)


def _default(table: str, key: str):
    model = Config.model_fields[table].annotation
    model = next(a for a in getattr(model, "__args__", (model,)) if a is not type(None))
    field = model.model_fields[key]
    value = field.get_default(call_default_factory=True)
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def _claims() -> list[tuple[str, str, str, object]]:
    claims = []
    for page in PAGES:
        for block in BLOCK.findall(page.read_text(encoding="utf-8")):
            parsed = tomllib.loads(block)
            # Each [table] line and the text up to the next one.
            for table, note, body in TABLE.findall(block):
                if "these are the defaults" in note:
                    for key, value in parsed[table].items():
                        claims.append((page.name, table, key, value))
                for key, value in IN_PLACE.findall(body):
                    claims.append((page.name, table, key, value))
    return claims


CLAIMS = _claims()


def test_the_docs_state_defaults_at_all():
    tables = {(table, key) for _, table, key, _ in CLAIMS}
    assert ("server", "api_key_env") in tables and ("retrieval", "mode") in tables


@pytest.mark.parametrize(("page", "table", "key", "value"), CLAIMS)
def test_a_stated_default_is_the_real_default(page, table, key, value):
    assert _default(table, key) == value, f"{page}: [{table}] {key} = {value!r}"

"""docs/reference/config.md is generated from the config models and must not go stale."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from promptembed.config import Config, reference

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "reference" / "config.md"


def test_committed_reference_is_current() -> None:
    fresh = reference.render()
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.is_file() else ""
    assert committed == fresh, (
        f"{COMMITTED} is stale: the config models changed. Regenerate it with\n"
        f"    {reference.COMMAND}\n"
        "and commit the result."
    )


def test_every_field_appears() -> None:
    text = reference.render()
    for section, info in Config.model_fields.items():
        assert f"## `[{section}]`" in text
        model = reference.section_model(info)
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"{section}.{name} missing from the reference"


def test_a_field_without_description_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Section(BaseModel):
        documented: int = Field(1, description="Has one.")
        undocumented: int = 2

    class Whole(BaseModel):
        embedder: Section = Field(default_factory=Section)

    monkeypatch.setattr(reference, "Config", Whole)
    with pytest.raises(reference.MissingDescriptionError, match=r"embedder\.undocumented"):
        reference.render()

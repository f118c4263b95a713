"""transformers' load report: the unused LM head is not reported, real findings are."""

from __future__ import annotations

import logging

import pytest

from promptembed import PromptEmbedder
from promptembed._util.optional import filter_known_noise


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_records():
    """What reaches transformers' loading logger's handlers (as with CI=true, which propagates)."""
    log = logging.getLogger("transformers.modeling_utils")
    handler = _Records()
    log.addHandler(handler)
    yield handler.messages
    log.removeHandler(handler)


def _report(*rows: str) -> str:
    table = "\n".join(
        ["Key            | Status     |  | ", "---------------+------------+--+-", *rows]
    )
    return f"LlamaModel LOAD REPORT from: /some/where\n{table}\n\nNotes:\n- ..."


def test_loading_a_causal_lm_checkpoint_does_not_report_its_unused_head(
    model_dirs, transformers_records
):
    PromptEmbedder(model_dirs["llama"].as_posix(), device="cpu").embed_query("Bees make honey.")
    assert not [m for m in transformers_records if "LOAD REPORT" in m], transformers_records


@pytest.mark.parametrize(
    ("rows", "shown"),
    [
        (["lm_head.weight | UNEXPECTED |  | "], False),
        (
            ["lm_head.weight | UNEXPECTED |  | ", "layers.0.mlp.up_proj.weight | MISSING |  | "],
            True,
        ),
        (["embed_tokens.weight | MISMATCH |  | "], True),
    ],
)
def test_only_a_head_only_report_is_dropped(transformers_records, rows, shown):
    filter_known_noise()
    logging.getLogger("transformers.modeling_utils").warning(_report(*rows))
    assert bool(transformers_records) is shown

"""The configs shipped under examples/configs load, and their calibrations fit them."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptembed.config import load_config
from promptembed.engine.calibration import Calibration

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "examples" / "configs").glob("*.toml"))


def test_the_documented_configs_ship():
    names = {p.name for p in CONFIGS}
    assert {
        "best-smollm2-en.toml",
        "best-gemma-en.toml",
        "best-gemma-zh.toml",
        "best-retrieval.toml",
        "best-retrieval-zh.toml",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads_with_a_matching_calibration(path):
    cfg = load_config(path).embedder
    if cfg.calibration is None:  # e.g. the hybrid retrieval config: raw dense vectors
        return
    assert Path(cfg.calibration).is_file()
    cal = Calibration.load(cfg.calibration)  # refuses a file whose hash is not its name
    # Fitted under exactly this embedder (model, templates, layer, max_length, ...).
    cal.check(cfg, hidden_size=len(cal.mean))


def test_no_calibration_file_is_left_without_a_config():
    named = [load_config(p).embedder.calibration for p in CONFIGS]
    used = {Path(c).name for c in named if c is not None}
    assert {p.name for p in CONFIGS[0].parent.glob("*.npz")} == used

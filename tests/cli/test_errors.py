"""A bad cache, calibration or size on the command line: one line naming the file and the fix."""

from __future__ import annotations

import hashlib
import os

import pytest
from typer.testing import CliRunner

from promptembed.cli import app
from tests.helpers import one_line_error

runner = CliRunner()


@pytest.fixture
def sts(tmp_path):
    data = tmp_path / "sts.csv"
    data.write_text(
        "s1,s2,score\nA man plays.,A man plays a guitar.,4\nA cat.,Stocks fell.,0\n"
        "A dog runs.,A dog is running.,5\n"
    )
    return data


def _config(tmp_path, model_dirs, **fields) -> str:
    lines = [f'model = "{model_dirs["llama"].as_posix()}"', 'device = "cpu"']
    lines += [f'{k} = "{v}"' for k, v in fields.items()]
    toml = tmp_path / "promptembed.toml"
    toml.write_text("[embedder]\n" + "\n".join(lines) + "\n")
    return str(toml)


def test_unreadable_calibration_is_one_line_and_v_shows_the_traceback(tmp_path, model_dirs, sts):
    blob = b"not an npz archive"
    bad = tmp_path / f"calibration-{hashlib.sha256(blob).hexdigest()[:12]}.npz"
    bad.write_bytes(blob)
    config = _config(tmp_path, model_dirs, calibration=bad.name)
    args = ["eval", "sts", "--data", str(sts), "--config", config, "--json"]
    line = one_line_error(runner.invoke(app, args))
    assert bad.name in line and "promptembed calibrate" in line and "-v" in line
    verbose = runner.invoke(app, ["-v", *args])
    assert verbose.exit_code == 2 and "Traceback" in verbose.output
    assert "promptembed calibrate" in verbose.output


def test_shared_cache_directory_is_one_line(tmp_path, model_dirs, sts):
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    os.chmod(shared, 0o777)
    config = _config(tmp_path, model_dirs, embedding_cache=str(shared))
    line = one_line_error(
        runner.invoke(app, ["eval", "sts", "--data", str(sts), "--config", config, "--json"])
    )
    assert str(shared) in line and "chmod 700" in line


@pytest.mark.parametrize("size", ["0", "-1"])
def test_batch_size_below_one_is_refused(tmp_path, model_dirs, sts, size):
    config = _config(tmp_path, model_dirs)
    args = ["eval", "sts", "--data", str(sts), "--config", config, "--batch-size", size]
    line = one_line_error(runner.invoke(app, args))
    assert "batch_size" in line and "greater than or equal to 1" in line

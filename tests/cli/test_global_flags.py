"""``-v`` and ``-q`` work before or after the subcommand (the CLI's own hints put -v last)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from promptembed.cli import app

runner = CliRunner()


@pytest.fixture
def sts(tmp_path):
    data = tmp_path / "sts.csv"
    data.write_text("s1,s2,score\nA man plays.,A man plays a guitar.,4\nA cat.,Stocks fell.,0\n")
    return data


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_anywhere_shows_the_traceback(tmp_path, where):
    args = ["eval", "sts", "--data", str(tmp_path / "missing.csv"), "--model", "x"]
    args = ["-v", *args] if where == "before" else [*args, "-v"]
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert "Traceback" in out.output and "-v for the traceback" not in out.output


@pytest.mark.parametrize("flags", [[], ["-q"], ["--quiet"]])
def test_quiet_after_the_subcommand_turns_progress_off(model_dirs, sts, flags, monkeypatch):
    import promptembed.evaluation.sts as evaluation  # the command imports it when it runs

    seen = []
    real = evaluation.evaluate_sts
    monkeypatch.setattr(
        evaluation,
        "evaluate_sts",
        lambda embedder, *a, **kw: (
            seen.append(embedder.config.show_progress) or real(embedder, *a, **kw)
        ),
    )
    args = ["eval", "sts", "--data", str(sts), "--model", str(model_dirs["llama"]), "--device"]
    out = runner.invoke(app, [*args, "cpu", *flags])
    assert out.exit_code == 0, out.output
    assert "spearman" in out.output
    assert seen == [not flags]


def test_flags_after_double_dash_are_left_alone(tmp_path):
    out = runner.invoke(app, ["query", "--config", str(tmp_path / "none.toml"), "--", "-v"])
    assert out.exit_code == 2
    assert "Traceback" not in out.output  # -v was the query text, not the flag


@pytest.mark.parametrize(
    ("quiet", "as_json", "terminal", "shown"),
    [
        (False, False, False, True),
        (False, True, True, True),  # --json on stdout; a person watches stderr
        (False, True, False, False),  # --json read by a program: no bar noise in its logs
        (True, False, True, False),
        (True, True, True, False),
    ],
)
def test_progress_follows_quiet_json_and_a_watching_terminal(
    monkeypatch, quiet, as_json, terminal, shown
):
    import io

    from promptembed.cli import base

    class Stderr(io.StringIO):
        def isatty(self) -> bool:
            return terminal

    monkeypatch.setattr(base, "_quiet", quiet)
    monkeypatch.setattr(base.sys, "stderr", Stderr())
    assert base.progress(as_json) is shown

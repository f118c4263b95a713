"""Assertions about what the command line prints (not a test module)."""

from __future__ import annotations

from typing import Any


def one_line_error(result: Any) -> str:
    """The single ``error:`` line of a CLI result that exited 2 without a traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]

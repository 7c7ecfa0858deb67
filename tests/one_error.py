"""How tests read a command's failure: the exit code and the one ``error:`` line a user sees (no traceback)."""

from __future__ import annotations

import pytest

from ssl_bench.cli import main


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """No line wrapping by rich: a message is checked as the one line a user sees."""
    monkeypatch.setenv("COLUMNS", "5000")


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and the error line (asserting there is exactly one and no traceback)."""
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return code, lines[0]

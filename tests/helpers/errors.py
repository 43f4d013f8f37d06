"""The one check of the brief's promise "bad user input is one line": an exception's message,
or a command's stderr (``q16: error: ...``, no traceback, non-zero exit)."""

from __future__ import annotations

import subprocess

import pytest


def one_line(
    failure: pytest.ExceptionInfo[BaseException] | BaseException | subprocess.CompletedProcess,
    expected: str = "",
) -> str:
    """The one-line error ``failure`` shows (containing ``expected``); fails the test otherwise."""
    if isinstance(failure, subprocess.CompletedProcess):
        stderr = str(failure.stderr)
        assert failure.returncode != 0, stderr[-2000:]
        assert "Traceback" not in stderr, stderr[-2000:]
        errors = [line for line in stderr.splitlines() if line.startswith("q16: error:")]
        assert len(errors) == 1 and expected in errors[0], stderr[-2000:]
        return errors[0]
    error = failure.value if isinstance(failure, pytest.ExceptionInfo) else failure
    message = str(error)
    assert message and "\n" not in message, message[:2000]
    assert expected in message, message[:2000]
    return message

"""cancel_on_signals: the log level of each received signal."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from codemate_setup.orchestrator.signals import (
    PARENT_PID_VARIABLE,
    CancelToken,
    cancel_on_signals,
)

LOGGER = "codemate_setup.orchestrator.signals"


def received_levels(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [
        record.levelno
        for record in caplog.records
        if record.name == LOGGER and record.getMessage().startswith("received")
    ]


def test_signals_warn_once_when_repeated(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PARENT_PID_VARIABLE, raising=False)
    caplog.set_level(logging.INFO, logger=LOGGER)

    with cancel_on_signals(CancelToken()) as token:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)

    assert token.signal_name == "SIGINT"
    assert received_levels(caplog) == [logging.WARNING, logging.INFO]


def test_signals_in_phase_child_log_info(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PARENT_PID_VARIABLE, str(os.getppid()))
    caplog.set_level(logging.INFO, logger=LOGGER)

    with cancel_on_signals(CancelToken()) as token:
        os.kill(os.getpid(), signal.SIGTERM)

    assert token.cancelled
    assert received_levels(caplog) == [logging.INFO]

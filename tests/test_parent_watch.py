"""cancel_when_parent_exits and the orchestrator's pid in the environment."""

from __future__ import annotations

import os

import pytest

from codemate_setup.orchestrator.signals import (
    PARENT_PID_VARIABLE,
    CancelToken,
    cancel_when_parent_exits,
    watched_parent,
)


@pytest.mark.parametrize("raw", ["", "0", "-5", "abc", "12x", "\u0661\u0662"])
def test_watched_parent_ignores_invalid_value(raw: str) -> None:
    assert watched_parent({PARENT_PID_VARIABLE: raw}) is None


def test_watched_parent_reads_pid() -> None:
    assert watched_parent({PARENT_PID_VARIABLE: "4321"}) == 4321


def test_parent_watch_keeps_token_while_parent_runs() -> None:
    token = CancelToken()

    with cancel_when_parent_exits(token, os.getppid()):
        token.event.wait(0.6)

    assert not token.cancelled


def test_parent_watch_cancels_when_parent_differs() -> None:
    token = CancelToken()

    with cancel_when_parent_exits(token, os.getppid() + 1_000_000):
        token.event.wait(5)

    assert token.cancelled
    assert token.signal_name == "the exit of the orchestrator"

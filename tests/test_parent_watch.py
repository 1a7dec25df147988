"""cancel_when_parent_exits and the orchestrator's pid in the environment."""

from __future__ import annotations

import os

import pytest
from update_helpers import child_env, run_cli

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


def test_standalone_update_ignores_inherited_parent_pid(tmp_path, middleware) -> None:
    home = tmp_path / "home"
    env = child_env(CODEMATE_PARENT_PID="1")

    result = run_cli(
        "2.9.0",
        "--middleware-url",
        middleware.url,
        "--home",
        str(home),
        "--yes",
        env=env,
    )

    assert result.returncode == 0, result.stderr
    assert (home / "version.txt").read_text().strip() == "2.9.0"

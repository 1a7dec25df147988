"""Command lines of the toolkit's scripts, as a user runs them."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

from bench.model import BenchContext
from codemate_setup.config import DEFAULT_SERVICE_PORTS
from codemate_setup.state import Phase

# Set by an orchestrator for its phases; a benchmark run must not inherit it.
SETUP_ID_VARIABLE = "CODEMATE_SETUP_ID"


def script_env() -> dict[str, str]:
    """Return the environment for the toolkit's scripts: this one, cleaned.

    The scripts find the ``codemate_setup`` package beside them, so no
    ``PYTHONPATH`` is set; it would leak into the environment's own
    interpreter during the verification.
    """
    env = dict(os.environ)
    for name in (SETUP_ID_VARIABLE, "CODEMATE_HOME", "PYTHONPATH"):
        env.pop(name, None)
    return env


def update_command(
    ctx: BenchContext, version: str, middleware_url: str, home: Path
) -> list[str]:
    """Return the ``update.py`` command that installs ``version`` into ``home``."""
    return [
        ctx.python,
        str(ctx.root / "update.py"),
        version,
        "--middleware-url",
        middleware_url,
        "--home",
        str(home),
        "--yes",
    ]


def verification_command(
    ctx: BenchContext, home: Path, middleware_url: str, wheelhouse: Path
) -> list[str]:
    """Return the ``verification_env.py`` command that installs from ``wheelhouse``."""
    return [
        ctx.python,
        str(ctx.root / "verification_env.py"),
        "--home",
        str(home),
        "--middleware-url",
        middleware_url,
        "--find-links",
        str(wheelhouse),
        "--no-index",
    ]


def free_port() -> int:
    """Return a loopback port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_service_ports() -> dict[str, str]:
    """Return a free port for each checked service, as environment variables.

    The verification checks these ports; free ones keep services that happen
    to run on this machine from changing what is measured.
    """
    # Every socket stays bound until all ports are known, so no two are equal.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in DEFAULT_SERVICE_PORTS]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        ports = [sock.getsockname()[1] for sock in sockets]
    return {
        name: str(port) for name, port in zip(DEFAULT_SERVICE_PORTS, ports, strict=True)
    }


def step_durations(state_file: Path, phase: Phase) -> dict[str, float]:
    """Return each completed step's duration in seconds, from the state file.

    Raises:
        RuntimeError: If the file has no such phase or no step timings.
    """
    document = json.loads(state_file.read_text(encoding="utf-8"))
    timings = document.get("phases", {}).get(phase.value, {}).get("step_timings")
    if not timings:
        raise RuntimeError(f"{state_file} has no step timings for {phase.value}")
    return {
        timing["step"]: timing["duration_seconds"]
        for timing in timings
        if timing.get("duration_seconds") is not None
    }

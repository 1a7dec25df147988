"""Helpers for the orchestrator tests: run the script, read the state, compare trees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "examples" / "releases-src"


def orchestrator_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "setup_orchestrator.py"), *args]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    env.pop("CODEMATE_SETUP_ID", None)
    env.pop("CODEMATE_HOME", None)
    return env


def run_setup(
    version: str | None, url: str, home: Path, *extra: str, timeout: float = 300
) -> subprocess.CompletedProcess:
    args = ([version] if version else []) + [
        "--middleware-url",
        url,
        "--home",
        str(home),
        "--yes",
        *extra,
    ]
    return subprocess.run(
        orchestrator_command(*args),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def read_state(home: Path) -> dict[str, Any]:
    return json.loads((home / "setup_state.json").read_text())


def tree_snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Map each file under ``root`` to its bytes and permission bits."""
    snapshot = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            relative = path.relative_to(root).as_posix()
            snapshot[relative] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return snapshot


def published_snapshot(releases: Path, version: str) -> dict[str, tuple[bytes, int]]:
    return tree_snapshot(releases / version / "files")

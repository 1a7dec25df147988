"""Session fixtures of the verification tests, loaded with ``pytest_plugins``.

Loading them as a plugin, not by import, makes each fixture exist once per
session even when several test modules use it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from wheelhouse import build_wheelhouse


@pytest.fixture(scope="session", name="wheelhouse")
def wheelhouse_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the standard test wheels."""
    return build_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


@pytest.fixture(scope="session", name="shared_env")
def shared_env_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with pip, for tests that ignore its package state."""
    env_dir = tmp_path_factory.mktemp("shared") / "environment"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    return env_dir

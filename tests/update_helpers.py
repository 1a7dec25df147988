"""Helpers for the update tests: publish releases, run updates, compare trees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conftest import make_tree

from codemate_setup.config import HomeLayout, Limits, RunOptions
from codemate_setup.middleware import MiddlewareHandle
from codemate_setup.publish import publish_release
from codemate_setup.state import SetupTracker
from codemate_setup.update_result import UpdateResult
from codemate_setup.updater import run_update

ROOT = Path(__file__).resolve().parent.parent

# Retries fast enough for tests, with the same logic as the defaults.
FAST_LIMITS = Limits(
    backoff_base=0.01,
    backoff_max=0.05,
    max_retry_after=0.2,
    read_timeout=2.0,
    connect_timeout=2.0,
)


def publish(
    releases: Path,
    version: str,
    files: Mapping[str, bytes | str],
    modes: Mapping[str, int] | None = None,
) -> Path:
    """Publish a release made of ``files``; return its published file tree."""
    source = releases.parent / "sources" / version
    make_tree(source, files, modes)
    publish_release(source, version, releases, durable=False)
    return releases / version / "files"


def publish_releases(
    releases: Path,
    files_by_version: Mapping[str, Mapping[str, bytes | str]],
    modes_by_version: Mapping[str, Mapping[str, int]] | None = None,
) -> Path:
    """Publish one release per version into ``releases``, in the mapping's order.

    ``modes_by_version`` gives a version's ``modes`` for :func:`publish`.
    Returns ``releases``.
    """
    for version, files in files_by_version.items():
        modes = modes_by_version.get(version) if modes_by_version else None
        publish(releases, version, files, modes)
    return releases


def tree_snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Map each file under ``root`` to its bytes and permission bits."""
    snapshot = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            relative = path.relative_to(root).as_posix()
            snapshot[relative] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return snapshot


def published_tree(releases: Path, version: str) -> dict[str, tuple[bytes, int]]:
    """Snapshot the published file tree of ``version``."""
    return tree_snapshot(releases / version / "files")


def folder_set(root: Path) -> set[str]:
    """Return the release paths of every folder under ``root``."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()}


def installed_tree(home: Path, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Snapshot the install folder, leaving out the paths in ``ignore``."""
    snapshot = tree_snapshot(home / "app")
    return {path: value for path, value in snapshot.items() if path not in ignore}


def layout_for(home: Path) -> HomeLayout:
    return HomeLayout.create(home)


def update_in_process(
    home: Path,
    url: str,
    version: str,
    *,
    limits: Limits = FAST_LIMITS,
    **options: Any,
) -> UpdateResult:
    """Run an update in this process with a tracker of its own."""
    layout = layout_for(home)
    run_options = RunOptions(layout=layout, middleware_url=url, limits=limits)
    tracker = SetupTracker(layout.state_file, durable=False)
    try:
        return run_update(
            run_options,
            version,
            tracker=tracker,
            own_setup=True,
            yes=options.pop("yes", True),
            **options,
        )
    finally:
        tracker.close()


def install_home(
    home: Path,
    server: MiddlewareHandle,
    version: str,
    user_files: Mapping[str, str] | None = None,
) -> Path:
    """Install ``version`` from ``server`` into a new home and return it.

    ``user_files`` maps paths in the install folder to text written after the
    install. The server's request log is then cleared, so it contains only the
    requests that the test makes itself.
    """
    update_in_process(home, server.url, version)
    for path, text in (user_files or {}).items():
        target = home / "app" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    server.requests.clear()
    return home


def child_env(**extra: str) -> dict[str, str]:
    """The environment of an ``update.py`` child: this tree, no inherited setup."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    for name in (
        "CODEMATE_SETUP_ID",
        "CODEMATE_HOME",
        "CODEMATE_FAULT_KILL_AT",
        "CODEMATE_FAULT_FAIL_AT",
    ):
        if name not in extra:
            env.pop(name, None)
    return env


def update_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "update.py"), *args]


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run ``update.py`` with ``args`` and return the finished process."""
    return subprocess.run(
        update_command(*args),
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else child_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def read_state(home: Path) -> dict[str, Any]:
    return json.loads((home / "setup_state.json").read_text())


def installed_version(home: Path) -> str | None:
    path = home / "version.txt"
    return path.read_text().strip() if path.exists() else None

"""Paths that a transaction touches, shared by the live transaction and recovery.

This module maps the home files that a transaction replaces and the release
paths that it moves to their places on disk, and fsyncs every folder whose
entries a transaction changed.
"""

from __future__ import annotations

from pathlib import Path

from codemate_setup.config import HomeLayout
from codemate_setup.fsutil import fsync_dir
from codemate_setup.journal import Journal


def home_file_paths(layout: HomeLayout) -> dict[str, Path]:
    """Return where each home file a transaction replaces lives."""
    return {
        "installed.json": layout.installed_listing,
        "version.txt": layout.version_file,
        "requirements.txt": layout.requirements_file,
    }


def install_path(root: Path, release_path: str) -> Path:
    """Join a validated release path to the install folder."""
    return root.joinpath(*release_path.split("/"))


def sync_folders(journal: Journal) -> None:
    """Fsync every folder whose entries the transaction changed."""
    folders = {journal.staging_dir, journal.backup_dir / "files"}
    for op in journal.ops:
        folders.add(install_path(journal.install_dir, op.path).parent)
    for folder in folders:
        if folder.is_dir():
            fsync_dir(folder)

"""verify_staged_file reuses the download's hash only for an unchanged file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from codemate_setup.errors import IntegrityError
from codemate_setup.filestore import VerifiedFile, verify_staged_file

OLD = b"release bytes"
NEW = b"changed bytes"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def staged_file(tmp_path: Path) -> tuple[Path, VerifiedFile]:
    path = tmp_path / "staged"
    path.write_bytes(OLD)
    return path, VerifiedFile.of(path, sha256(OLD))


def test_unchanged_file_uses_download_hash(tmp_path: Path) -> None:
    path, known = staged_file(tmp_path)
    info = path.stat()
    # Same size, inode and modification time: only a re-read could tell.
    path.write_bytes(NEW)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))

    digest, size = verify_staged_file("a.txt", path, sha256(OLD), len(OLD), known)

    assert digest == sha256(OLD)
    assert size == len(OLD)


def test_changed_file_is_hashed_again(tmp_path: Path) -> None:
    path, known = staged_file(tmp_path)
    path.write_bytes(NEW)
    os.utime(path, ns=(0, known.mtime_ns + 1_000_000_000))

    with pytest.raises(IntegrityError, match="does not match the manifest"):
        verify_staged_file("a.txt", path, sha256(OLD), len(OLD), known)
    assert not path.exists()


def test_without_download_hash_file_is_read(tmp_path: Path) -> None:
    path, _known = staged_file(tmp_path)
    digest, size = verify_staged_file("a.txt", path, sha256(OLD), len(OLD))
    assert digest == sha256(OLD)
    assert size == len(OLD)

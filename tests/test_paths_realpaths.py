"""resolve_inside with a cache of resolved folders, and the control-character check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codemate_setup.errors import ManifestError
from codemate_setup.paths import resolve_inside, validate_release_path


def test_cached_resolve_matches_uncached(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    cache: dict[Path, Path] = {}
    cached = resolve_inside(tmp_path, "pkg/a.py", realpaths=cache)
    assert cached == resolve_inside(tmp_path, "pkg/a.py")
    assert cache[tmp_path / "pkg"] == Path(os.path.realpath(tmp_path / "pkg"))


def test_cached_resolve_rejects_link_out(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "pkg").symlink_to(outside)
    cache: dict[Path, Path] = {}
    resolve_inside(root, "a.py", realpaths=cache)
    with pytest.raises(ManifestError, match="resolves outside"):
        resolve_inside(root, "pkg/a.py", realpaths=cache)


def test_cached_resolve_reuses_folders(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    cache: dict[Path, Path] = {}
    for name in ("a.py", "b.py", "c.py"):
        resolve_inside(tmp_path, f"pkg/{name}", realpaths=cache)
    assert sorted(cache) == [tmp_path, tmp_path / "pkg"]


@pytest.mark.parametrize(
    "character", ["\x00", "\x01", "\x1f", "\x7f"], ids=["nul", "soh", "us", "del"]
)
def test_release_path_rejects_control_character(character: str) -> None:
    with pytest.raises(ManifestError, match="contains a NUL or control character"):
        validate_release_path(f"pkg/a{character}b.py")


@pytest.mark.parametrize(
    "character", [" ", "~", "\x80", "é"], ids=["space", "tilde", "c1-start", "accent"]
)
def test_release_path_accepts_printable_character(character: str) -> None:
    assert validate_release_path(f"pkg/a{character}b.py") == f"pkg/a{character}b.py"

"""Path checks in bulk: resolve_inside with a cache of resolved folders, ReleaseRoot,
the one-pattern validation of many paths, and the control-character check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codemate_setup import paths
from codemate_setup.errors import ManifestError
from codemate_setup.paths import (
    ReleaseRoot,
    release_paths_are_safe,
    resolve_inside,
    validate_release_path,
    validate_release_paths,
)


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


# Paths that break one rule of validate_release_path each. The pattern that
# accepts a safe path in one match must reject every one of them.
UNSAFE_PATHS = [
    "",
    "/abs.py",
    "pkg/",
    "pkg//a.py",
    ".",
    "..",
    "./a.py",
    "pkg/./a.py",
    "pkg/..",
    "../a.py",
    "a\\b.py",
    "C:/a.py",
    "c:a.py",
    "a\nb.py",
    "a\tb.py",
    "a\x7fb.py",
    "x" * 1025,
]
SAFE_PATHS = [
    "a.py",
    "...",
    "..a",
    "a..",
    ".env",
    "pkg/.hidden/a.py",
    "ab:c",
    "x" * 1024,
]


@pytest.mark.parametrize("path", UNSAFE_PATHS)
def test_release_path_rejects_each_rule_breaker(path: str) -> None:
    with pytest.raises(ManifestError, match="unsafe manifest path"):
        validate_release_path(path)


@pytest.mark.parametrize("path", SAFE_PATHS)
def test_release_path_accepts_unusual_safe_names(path: str) -> None:
    assert validate_release_path(path) == path
    assert release_paths_are_safe([path])


@pytest.mark.parametrize("path", UNSAFE_PATHS)
def test_release_paths_together_reject_rule_breaker(path: str) -> None:
    assert not release_paths_are_safe(["pkg/a.py", path, "b.py"])


def test_release_paths_line_break_rejected() -> None:
    # Joined by line breaks, "a.py\nb.py" would read as two safe paths.
    assert not release_paths_are_safe(["a.py\nb.py"])

    with pytest.raises(ManifestError, match="control character"):
        validate_release_paths(["ok.py", "a.py\nb.py"])


def test_release_paths_error_names_first_unsafe() -> None:
    with pytest.raises(ManifestError) as caught:
        validate_release_paths(["ok.py", "../first.py", "/second.py"])

    assert "'../first.py'" in str(caught.value)


def test_release_paths_reject_non_string() -> None:
    assert not release_paths_are_safe(["ok.py", 3])

    with pytest.raises(ManifestError, match="must be a string, got 3"):
        validate_release_paths(["ok.py", 3])


def test_release_paths_empty_list_is_safe() -> None:
    validate_release_paths([])


def test_release_root_joins_like_resolve_inside(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    root = ReleaseRoot(tmp_path)

    assert root.join("pkg/a.py") == str(resolve_inside(tmp_path, "pkg/a.py"))
    assert root.join("top.py") == str(tmp_path / "top.py")


def test_release_root_rejects_link_out_every_time(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (tmp_path / "outside").mkdir()
    (app / "pkg").symlink_to(tmp_path / "outside")
    root = ReleaseRoot(app)

    for name in ("a.py", "b.py"):
        with pytest.raises(ManifestError, match="resolves outside"):
            root.join(f"pkg/{name}")


@pytest.mark.parametrize("path", ["../a.py", "pkg/..", "/etc/passwd"])
def test_release_root_validates_each_path(tmp_path: Path, path: str) -> None:
    (tmp_path / "pkg").mkdir()
    root = ReleaseRoot(tmp_path)
    root.join("pkg/a.py")

    with pytest.raises(ManifestError, match="unsafe manifest path"):
        root.join(path)


def test_release_root_join_all_matches_join(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    paths = ["top.py", "pkg/a.py", "pkg/sub/b.py", "pkg/c.py"]

    assert ReleaseRoot(tmp_path).join_all(paths) == [
        ReleaseRoot(tmp_path).join(path) for path in paths
    ]


def test_release_root_join_all_names_first_link_out(
    tmp_path: Path,
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (tmp_path / "outside").mkdir()
    (app / "pkg").symlink_to(tmp_path / "outside")

    with pytest.raises(ManifestError) as caught:
        ReleaseRoot(app).join_all(["a.py", "pkg/first.py", "pkg/second.py"])

    assert "'pkg/first.py': it resolves outside" in str(caught.value)


def test_release_root_join_all_names_first_unsafe_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        ReleaseRoot(tmp_path).join_all(["a.py", "b/../../x.py", "/etc/passwd"])

    assert "'b/../../x.py'" in str(caught.value)


def test_release_root_rejects_link_out_and_back_in(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "real").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (app / "pkg").symlink_to(tmp_path / "outside")
    (tmp_path / "outside" / "back").symlink_to(app / "real")

    with pytest.raises(ManifestError) as caught:
        ReleaseRoot(app).join_all(["pkg/back/a.py", "pkg/b.py"])

    assert "'pkg/back/a.py': it resolves outside" in str(caught.value)


def test_release_root_accepts_link_to_folder_inside(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "real" / "sub").mkdir(parents=True)
    (app / "pkg").symlink_to("real")

    joined = ReleaseRoot(app).join_all(["pkg/sub/a.py"])

    assert joined == [str(app / "pkg" / "sub" / "a.py")]


def test_release_root_proves_real_folders_without_resolving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    resolved = []
    monkeypatch.setattr(
        paths.os.path, "realpath", lambda path: resolved.append(path) or path
    )

    ReleaseRoot(tmp_path).join_all(["top.py", "pkg/a.py", "pkg/sub/b.py"])

    assert resolved == []

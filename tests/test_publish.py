"""The release publisher: round trip, determinism, incremental lists, rejections."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from codemate_setup import publish, publish_write
from codemate_setup.errors import ExitCode, ManifestError, UsageError
from codemate_setup.publish import publish_release
from codemate_setup.publish_manifest import diff_listings
from codemate_setup.source_tree import (
    find_case_collisions,
    normalized_mode,
    windows_name_problem,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file system")

ROUND_TRIP_FILES: dict[str, bytes | str] = {
    "initiate.py": "print('hello')\n",
    "README.md": "# readme\n",
    "empty.txt": b"",
    "bin/run.sh": "#!/bin/sh\necho run\n",
    "assets/blob.bin": bytes(range(256)) * 64,
    "assets/zeros.bin": b"\x00" * 4096,
    "deep/a/b/c/d/e/leaf.txt": "leaf",
    "unicode/größe.txt": "umlaut",
    "unicode/日本語 file.md": "japanese",
    "unicode/emoji-😀.txt": "emoji",
    "names/with space.txt": "space",
    "names/percent%20literal.txt": "percent",
    "names/hash#and+plus.txt": "hash",
    "names/.hidden": "hidden",
}
ROUND_TRIP_MODES = {"bin/run.sh": 0o755, "initiate.py": 0o775, "README.md": 0o600}


def snapshot(folder: Path) -> list[str]:
    """Every path under ``folder``, hidden ones included, or [] if absent."""
    if not folder.exists():
        return []
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def run_cli(*argv: str) -> int:
    return publish.main([str(arg) for arg in argv])


# Round trip


@posix_only
def test_round_trip_bytes_and_modes(tmp_path, make_tree, start_middleware):
    source = make_tree(tmp_path / "src", ROUND_TRIP_FILES, ROUND_TRIP_MODES)
    releases = tmp_path / "releases"
    result = publish_release(source, "1.0.0", releases, durable=False)
    handle = start_middleware(releases)

    manifest = requests.get(f"{handle.url}/manifest/v1.0.0", timeout=10).json()
    entries = {entry["path"]: entry for entry in manifest["files"]}
    assert sorted(entries) == sorted(ROUND_TRIP_FILES)
    assert result.file_count == len(ROUND_TRIP_FILES)

    with requests.Session() as session:
        for path, entry in entries.items():
            url = f"{handle.url}/download/v1.0.0/{quote(path)}"
            response = session.get(url, timeout=10)
            original = (source / path).read_bytes()
            stored = releases / "1.0.0" / "files" / path

            assert response.status_code == 200, path
            assert response.content == original, path
            assert entry["sha256"] == hashlib.sha256(original).hexdigest(), path
            assert entry["size"] == len(original), path
            source_mode = (source / path).stat().st_mode
            assert entry["mode"] == normalized_mode(source_mode), path
            assert stat.S_IMODE(stored.stat().st_mode) == int(entry["mode"], 8), path


@posix_only
def test_round_trip_modes_normalized(tmp_path, make_tree):
    source = make_tree(tmp_path / "src", ROUND_TRIP_FILES, ROUND_TRIP_MODES)

    result = publish_release(source, "1.0.0", tmp_path / "releases", durable=False)
    modes = {entry["path"]: entry["mode"] for entry in result.manifest["files"]}

    assert modes["bin/run.sh"] == "0755"
    assert modes["initiate.py"] == "0755"
    assert modes["README.md"] == "0644"
    assert modes["empty.txt"] == "0644"


def test_publish_large_tree(tmp_path, make_tree):
    files = {
        f"pkg{i % 40}/sub{i % 7}/module_{i}.py": f"value = {i}\n" for i in range(3000)
    }
    source = make_tree(tmp_path / "src", files)

    result = publish_release(source, "1.0.0", tmp_path / "releases", durable=False)

    assert result.file_count == 3000
    assert len(result.manifest["files"]) == 3000
    assert (tmp_path / "releases/1.0.0/files/pkg7/sub0/module_7.py").read_text() == (
        "value = 7\n"
    )


def test_published_release_layout(tmp_path, make_tree):
    source = make_tree(
        tmp_path / "src", {"initiate.py": "x", "requirements.txt": "# none\n"}
    )

    publish_release(source, "v2.0.0", tmp_path / "releases")

    release_dir = tmp_path / "releases" / "2.0.0"
    info = json.loads((release_dir / "release.json").read_text())
    manifest = json.loads((release_dir / "manifest.json").read_text())
    assert snapshot(tmp_path / "releases") == [
        "2.0.0",
        "2.0.0/files",
        "2.0.0/files/initiate.py",
        "2.0.0/files/requirements.txt",
        "2.0.0/manifest.json",
        "2.0.0/release.json",
    ]
    assert set(info) == {
        "version",
        "previous_version",
        "published_at",
        "file_count",
        "total_bytes",
        "entry_point",
        "requirements",
    }
    assert info["total_bytes"] == 8
    assert "published_at" not in manifest
    assert manifest["requirements"] == "requirements.txt"
    assert manifest["entry_point"] == "initiate.py"
    assert manifest["previous_version"] is None
    assert manifest["codebase"]["files_add"] == ["initiate.py", "requirements.txt"]


def test_cli_publish_prints_summary(tmp_path, make_tree, capsys):
    source = make_tree(tmp_path / "src", {"a.txt": "a"})

    code = run_cli(source, "--version", "1.0.0", "--to", tmp_path / "releases")

    assert code == ExitCode.OK
    assert "published 1.0.0" in capsys.readouterr().out
    assert (tmp_path / "releases" / "1.0.0" / "files" / "a.txt").read_text() == "a"


# Requirements and entry point


def test_requirements_flag_replaces_tree_copy(tmp_path, make_tree):
    source = make_tree(tmp_path / "src", {"a.txt": "a", "requirements.txt": "old\n"})
    chosen = tmp_path / "reqs.txt"
    chosen.write_text("requests==2.31.0\n")

    result = publish_release(
        source, "1.0.0", tmp_path / "releases", requirements=chosen, durable=False
    )

    stored = tmp_path / "releases/1.0.0/files/requirements.txt"
    assert stored.read_text() == "requests==2.31.0\n"
    assert result.manifest["requirements"] == "requirements.txt"
    assert (source / "requirements.txt").read_text() == "old\n"


@posix_only
def test_requirements_flag_may_be_link(tmp_path, make_tree):
    source = make_tree(tmp_path / "src", {"a.txt": "a"})
    (tmp_path / "real.txt").write_text("packaging\n")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")

    publish_release(
        source,
        "1.0.0",
        tmp_path / "releases",
        requirements=tmp_path / "link.txt",
        durable=False,
    )

    stored = tmp_path / "releases/1.0.0/files/requirements.txt"
    assert stored.read_text() == "packaging\n"
    assert not stored.is_symlink()


def test_no_requirements_gives_null(tmp_path, make_tree):
    source = make_tree(tmp_path / "src", {"a.txt": "a"})

    result = publish_release(source, "1.0.0", tmp_path / "releases", durable=False)

    assert result.manifest["requirements"] is None
    assert result.manifest["entry_point"] is None


def test_entry_point_flag(tmp_path, make_tree):
    source = make_tree(tmp_path / "src", {"app/main.py": "x", "initiate.py": "y"})

    result = publish_release(
        source, "1.0.0", tmp_path / "releases", entry_point="app/main.py", durable=False
    )

    assert result.manifest["entry_point"] == "app/main.py"


# Determinism


def test_same_tree_same_manifest(tmp_path, make_tree):
    source = make_tree(tmp_path / "src", ROUND_TRIP_FILES, ROUND_TRIP_MODES)

    publish_release(source, "1.0.0", tmp_path / "one", durable=False)
    publish_release(source, "1.0.0", tmp_path / "two", durable=False)

    first = (tmp_path / "one/1.0.0/manifest.json").read_bytes()
    second = (tmp_path / "two/1.0.0/manifest.json").read_bytes()
    assert first == second


def test_creation_order_does_not_matter(tmp_path, make_tree):
    files = dict(ROUND_TRIP_FILES)
    reversed_files = dict(reversed(list(files.items())))
    make_tree(tmp_path / "src1", files)
    make_tree(tmp_path / "src2", reversed_files)

    first = publish_release(tmp_path / "src1", "1.0.0", tmp_path / "r1", durable=False)
    second = publish_release(tmp_path / "src2", "1.0.0", tmp_path / "r2", durable=False)

    assert first.manifest == second.manifest


def test_manifest_files_sorted(tmp_path, make_tree):
    source = make_tree(tmp_path / "src", ROUND_TRIP_FILES)

    result = publish_release(source, "1.0.0", tmp_path / "releases", durable=False)

    paths = [entry["path"] for entry in result.manifest["files"]]
    assert paths == sorted(paths)
    assert result.manifest["codebase"]["files_add"] == sorted(paths)


# Incremental lists across three versions


def test_incremental_lists_three_versions(tmp_path, make_tree):
    releases = tmp_path / "releases"
    v1 = make_tree(
        tmp_path / "v1",
        {
            "keep.txt": "same",
            "edit.txt": "one",
            "gone.txt": "bye",
            "tool.sh": "echo",
            "node": "a file that becomes a folder",
            "dir/inner.txt": "a folder that becomes a file",
        },
    )
    v2 = make_tree(
        tmp_path / "v2",
        {
            "keep.txt": "same",
            "edit.txt": "two",
            "new.txt": "hello",
            "tool.sh": "echo",
            "node/child.txt": "now a folder",
            "node/deeper/x.txt": "x",
            "dir": "now a file",
        },
        modes={"tool.sh": 0o755},
    )
    v3 = make_tree(
        tmp_path / "v3",
        {
            "keep.txt": "same",
            "edit.txt": "three",
            "new.txt": "hello",
            "tool.sh": "echo",
        },
        modes={"tool.sh": 0o755},
    )

    first = publish_release(v1, "1.0.0", releases, durable=False)
    second = publish_release(v2, "2.0.0", releases, durable=False)
    third = publish_release(v3, "3.0.0", releases, durable=False)

    assert first.manifest["previous_version"] is None
    assert second.manifest["previous_version"] == "1.0.0"
    assert third.manifest["previous_version"] == "2.0.0"
    assert second.manifest["codebase"] == {
        "files_add": ["dir", "new.txt", "node/child.txt", "node/deeper/x.txt"],
        "files_edit": ["edit.txt", "tool.sh"],
        "files_delete": ["dir/inner.txt", "gone.txt", "node"],
    }
    assert third.manifest["codebase"] == {
        "files_add": [],
        "files_edit": ["edit.txt"],
        "files_delete": ["dir", "node/child.txt", "node/deeper/x.txt"],
    }


def test_previous_is_highest_lower_version(tmp_path, make_tree):
    releases = tmp_path / "releases"
    for version in ("1.0.0", "3.0.0"):
        source = make_tree(tmp_path / version, {"v.txt": version})
        publish_release(source, version, releases, durable=False)
    source = make_tree(tmp_path / "backport", {"v.txt": "1.5.0"})

    result = publish_release(source, "1.5.0", releases, durable=False)

    assert result.manifest["previous_version"] == "1.0.0"
    assert result.manifest["codebase"]["files_edit"] == ["v.txt"]


# Rejections: message, exit code and nothing written


def expect_rejection(capsys, releases: Path, *argv) -> str:
    """Run the CLI expecting a rejection with exit code 2, and return the error."""
    before = snapshot(releases)

    code = run_cli(*argv)

    captured = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert snapshot(releases) == before
    return captured.err


@pytest.fixture
def existing(tmp_path, make_tree):
    """A releases folder that already contains 3.0.0, and a valid source tree."""
    releases = tmp_path / "releases"
    source = make_tree(tmp_path / "src", {"initiate.py": "print(1)\n"})
    publish_release(source, "3.0.0", releases, durable=False)
    return releases, source


@pytest.mark.parametrize("version", ["3.0.0", "v3.0.0", "3.0", "3.0.0.0"])
def test_reject_existing_version(capsys, existing, version):
    releases, source = existing

    error = expect_rejection(
        capsys, releases, source, "--version", version, "--to", releases
    )

    assert f"version '{version}' is already published at " in error
    assert str(releases / "3.0.0") in error


@pytest.mark.parametrize(
    "version", ["latest", "3.0.0/../x", "", "v", "3..0", "../3.0.0", "3 0"]
)
def test_reject_invalid_version(capsys, existing, version):
    releases, source = existing

    error = expect_rejection(
        capsys, releases, source, "--version", version, "--to", releases
    )

    assert "invalid version" in error


def test_reject_missing_source(capsys, tmp_path):
    releases = tmp_path / "releases"

    error = expect_rejection(
        capsys, releases, tmp_path / "absent", "--version", "1.0.0", "--to", releases
    )

    assert "source folder" in error
    assert "not found" in error
    assert not releases.exists()


def test_reject_source_is_file(capsys, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    releases = tmp_path / "releases"

    error = expect_rejection(
        capsys, releases, tmp_path / "file.txt", "--version", "1.0.0", "--to", releases
    )

    assert "must be a folder, found a file" in error


def test_reject_releases_dir_is_file(capsys, tmp_path, make_tree):
    source = make_tree(tmp_path / "src", {"a.txt": "a"})
    (tmp_path / "releases").write_text("x")

    error = expect_rejection(
        capsys,
        tmp_path / "releases",
        source,
        "--version",
        "1",
        "--to",
        tmp_path / "releases",
    )

    assert "releases folder" in error
    assert (tmp_path / "releases").read_text() == "x"


def test_reject_releases_inside_source(capsys, tmp_path, make_tree):
    source = make_tree(tmp_path / "src", {"a.txt": "a"})
    releases = source / "releases"

    error = expect_rejection(
        capsys, releases, source, "--version", "1.0.0", "--to", releases
    )

    assert "must be outside the source folder" in error
    assert not releases.exists()


def test_reject_missing_requirements(capsys, existing, tmp_path):
    releases, source = existing

    error = expect_rejection(
        capsys,
        releases,
        source,
        "--version",
        "4.0.0",
        "--to",
        releases,
        "--requirements",
        tmp_path / "nope.txt",
    )

    assert "requirements file" in error
    assert "not found" in error


def test_reject_unknown_entry_point(capsys, existing):
    releases, source = existing

    error = expect_rejection(
        capsys,
        releases,
        source,
        "--version",
        "4.0.0",
        "--to",
        releases,
        "--entry-point",
        "main.py",
    )

    assert "entry point 'main.py' not found in the source tree" in error


def test_reject_empty_tree(capsys, tmp_path):
    (tmp_path / "src" / "only" / "folders").mkdir(parents=True)
    releases = tmp_path / "releases"

    error = expect_rejection(
        capsys, releases, tmp_path / "src", "--version", "1", "--to", releases
    )

    assert "contains no files" in error
    assert not releases.exists()


@posix_only
def test_reject_symlink(capsys, existing):
    releases, source = existing
    (source / "link.py").symlink_to("initiate.py")
    (source / "outside").symlink_to("/", target_is_directory=True)

    error = expect_rejection(
        capsys, releases, source, "--version", "4.0.0", "--to", releases
    )

    assert "'link.py' is a symbolic link" in error
    assert "'outside' is a symbolic link" in error
    assert "found 2 other entries" in error


@posix_only
def test_reject_fifo(capsys, existing):
    releases, source = existing
    os.mkfifo(source / "pipe")

    error = expect_rejection(
        capsys, releases, source, "--version", "4.0.0", "--to", releases
    )

    assert "'pipe' is a special file (FIFO, socket or device)" in error


def test_reject_case_collision(capsys, existing, make_tree):
    releases, source = existing
    make_tree(source, {"README.md": "a", "docs/x.txt": "x"})
    try:
        make_tree(source, {"Readme.md": "b", "Docs/y.txt": "y"})
    except FileExistsError:
        pytest.skip("this file system ignores letter case")
    if len(list(source.iterdir())) < 5:
        pytest.skip("this file system ignores letter case")

    error = expect_rejection(
        capsys, releases, source, "--version", "4.0.0", "--to", releases
    )

    assert "'README.md' and 'Readme.md' differ only in letter case" in error
    assert "'Docs' and 'docs' differ only in letter case" in error


@pytest.mark.skipif(sys.platform != "linux", reason="needs arbitrary file names")
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a:b.txt", 'one of <>:"|?*'),
        ("what?.txt", 'one of <>:"|?*'),
        ("trailing.", "ending in a dot or a space"),
        ("trailing ", "ending in a dot or a space"),
        ("CON", "reserved for a device"),
        ("nul.txt", "reserved for a device"),
        ("back\\slash.txt", "contains a backslash"),
        ("tab\there.txt", "control character"),
    ],
    ids=[
        "colon",
        "question-mark",
        "trailing-dot",
        "trailing-space",
        "device-name",
        "device-name-extension",
        "backslash",
        "control-char",
    ],
)
def test_reject_unportable_name(capsys, existing, name, reason):
    releases, source = existing
    (source / name).write_text("x")

    error = expect_rejection(
        capsys, releases, source, "--version", "4.0.0", "--to", releases
    )

    assert reason in error


@pytest.mark.skipif(sys.platform != "linux", reason="needs byte file names")
def test_reject_non_utf8_name(capsys, existing):
    releases, source = existing
    with open(os.path.join(os.fsencode(source), b"bad\xff.txt"), "wb") as handle:
        handle.write(b"x")

    error = expect_rejection(
        capsys, releases, source, "--version", "4.0.0", "--to", releases
    )

    assert "name that is not valid UTF-8" in error


def test_reject_lists_at_most_ten(capsys, existing):
    releases, source = existing
    for index in range(13):
        (source / f"bad{index}?.txt").write_text("x")

    error = expect_rejection(
        capsys, releases, source, "--version", "4.0.0", "--to", releases
    )

    assert "found 13 other entries" in error
    assert "and 3 more" in error


def test_damaged_previous_manifest_fails(capsys, existing):
    releases, source = existing
    (releases / "3.0.0" / "manifest.json").write_text("{broken")
    before = snapshot(releases)

    code = run_cli(source, "--version", "4.0.0", "--to", releases)

    error = capsys.readouterr().err
    assert code == ExitCode.FAILED
    assert "cannot read the files listing of earlier release 3.0.0" in error
    assert snapshot(releases) == before


def test_disk_full_leaves_nothing(capsys, existing, monkeypatch):
    releases, source = existing
    before = snapshot(releases)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(publish_write, "atomic_write_json", full_disk)
    code = run_cli(source, "--version", "4.0.0", "--to", releases)

    error = capsys.readouterr().err
    assert code == ExitCode.FAILED
    assert "failed to write release 4.0.0" in error
    assert os.strerror(errno.ENOSPC) in error
    assert "nothing was published" in error
    assert snapshot(releases) == before


def test_api_raises_usage_error(tmp_path):
    with pytest.raises(UsageError, match="source folder .* not found"):
        publish_release(tmp_path / "absent", "1.0.0", tmp_path / "releases")


def test_api_raises_manifest_error(existing):
    releases, source = existing
    (releases / "3.0.0" / "manifest.json").write_text("[]")

    with pytest.raises(ManifestError, match="earlier release 3.0.0"):
        publish_release(source, "4.0.0", releases)


# Pure decisions


def test_collisions_file_and_folder():
    assert find_case_collisions(["lib/a.py", "Lib/b.py", "x.txt"]) == [("Lib", "lib")]


def test_collisions_unicode_normalization():
    composed = "caf\u00e9.txt"
    decomposed = "cafe\u0301.txt"

    assert find_case_collisions([composed, decomposed]) == [(decomposed, composed)]


def test_collisions_none_for_distinct():
    assert find_case_collisions(["a/b.txt", "a/c.txt", "ab.txt"]) == []


@pytest.mark.parametrize(
    "name", ["normal.txt", "icon.png", "CONSOLE", "console.log", "x-y_z"]
)
def test_windows_name_accepted(name):
    assert windows_name_problem(name) is None


def test_normalized_mode_owner_exec():
    assert normalized_mode(0o100744) == "0755"


def test_normalized_mode_group_exec_only():
    assert normalized_mode(0o100654) == "0644"


def test_diff_listings_mode_change_is_edit():
    previous = {"a": {"path": "a", "sha256": "1", "mode": "0644"}}
    current = [{"path": "a", "sha256": "1", "mode": "0755"}]

    assert diff_listings(previous, current)["files_edit"] == ["a"]

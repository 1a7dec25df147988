"""Tests of the application files check against the installed listing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from codemate_setup.verify.appfiles import (
    ListingError,
    compare_files,
    entry_point_result,
    files_result,
    load_listing,
    parse_listing,
)
from codemate_setup.verify.model import CheckStatus

FILES = {"initiate.py": b"print('hi')\n", "pkg/core.py": b"VALUE = 1\n"}


def install(install_dir: Path, files: dict[str, bytes] = FILES) -> dict:
    """Write files and return a listing document for them."""
    entries = {}
    for path, data in files.items():
        target = install_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        entries[path] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "mode": "0644",
            "mtime_ns": target.stat().st_mtime_ns,
        }
    return {
        "format": 1,
        "version": "3.0.0",
        "entry_point": "initiate.py",
        "requirements": "requirements.txt",
        "files": entries,
    }


def test_intact_installation_is_ok(tmp_path: Path) -> None:
    listing = parse_listing(install(tmp_path))

    result = files_result(compare_files(listing, tmp_path, deep=False), "3.0.0", False)

    assert result.status is CheckStatus.OK
    assert result.value == "2 files of version 3.0.0 match by size"


def test_missing_file_is_critical(tmp_path: Path) -> None:
    listing = parse_listing(install(tmp_path))
    (tmp_path / "pkg" / "core.py").unlink()

    result = files_result(compare_files(listing, tmp_path, deep=False), "3.0.0", False)

    assert result.status is CheckStatus.FAIL
    assert result.value == (
        "1 of 2 files of version 3.0.0 are not as installed: 1 missing (pkg/core.py)"
    )
    assert result.action == "repair the installation with: python update.py 3.0.0"


def test_wrong_size_is_found(tmp_path: Path) -> None:
    listing = parse_listing(install(tmp_path))
    (tmp_path / "pkg" / "core.py").write_bytes(b"VALUE = 12345\n")

    comparison = compare_files(listing, tmp_path, deep=False)

    assert comparison.wrong_size == ["pkg/core.py"]


def test_same_size_edit_found_by_mtime(tmp_path: Path) -> None:
    listing = parse_listing(install(tmp_path))
    target = tmp_path / "pkg" / "core.py"
    target.write_bytes(b"VALUE = 2\n")
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))

    comparison = compare_files(listing, tmp_path, deep=False)

    assert comparison.wrong_hash == ["pkg/core.py"]
    assert comparison.hashed == 1


def test_same_size_edit_with_restored_mtime_needs_deep(tmp_path: Path) -> None:
    document = install(tmp_path)
    listing = parse_listing(document)
    target = tmp_path / "pkg" / "core.py"
    mtime = document["files"]["pkg/core.py"]["mtime_ns"]
    target.write_bytes(b"VALUE = 2\n")
    os.utime(target, ns=(mtime, mtime))

    quick = compare_files(listing, tmp_path, deep=False)
    deep = compare_files(listing, tmp_path, deep=True)

    assert quick.wrong_hash == []
    assert deep.wrong_hash == ["pkg/core.py"]
    assert deep.hashed == 2


def test_entry_point_missing_is_critical(tmp_path: Path) -> None:
    listing = parse_listing(install(tmp_path))
    (tmp_path / "initiate.py").unlink()

    result = entry_point_result(listing, tmp_path, "3.0.0")

    assert result is not None
    assert result.status is CheckStatus.FAIL
    assert result.value == f"initiate.py not found in {tmp_path}"


def test_entry_point_present_is_ok(tmp_path: Path) -> None:
    listing = parse_listing(install(tmp_path))

    result = entry_point_result(listing, tmp_path, "3.0.0")

    assert result is not None
    assert result.status is CheckStatus.OK


def test_listing_without_entry_point_skips_check(tmp_path: Path) -> None:
    document = install(tmp_path)
    document["entry_point"] = None

    assert entry_point_result(parse_listing(document), tmp_path, "3.0.0") is None


@pytest.mark.skipif(os.name != "posix", reason="needs symbolic links")
def test_symlink_escape_is_reported_unsafe(tmp_path: Path) -> None:
    app = tmp_path / "app"
    outside = tmp_path / "outside"
    outside.mkdir()
    document = install(app, {"data/file.txt": b"x"})
    (app / "data" / "file.txt").unlink()
    (app / "data").rmdir()
    (outside / "file.txt").write_bytes(b"x")
    os.symlink(outside, app / "data")

    comparison = compare_files(parse_listing(document), app, deep=False)

    assert comparison.unsafe == ["data/file.txt"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "the listing must be a JSON object"),
        ({"files": 3}, "'files' must be an object or a list"),
        (
            {"files": {"../etc/passwd": {"size": 1}}},
            "unsafe manifest path '../etc/passwd'",
        ),
        (
            {"files": {"a.py": {"size": -1}}},
            "the size of 'a.py' must be a whole number",
        ),
        ({"files": {}, "version": 3}, "'version' must be a string or null, got 3"),
    ],
    ids=["not-object", "files-type", "unsafe-path", "negative-size", "version-type"],
)
def test_invalid_listing_is_rejected(document: object, message: str) -> None:
    with pytest.raises(ListingError) as caught:
        parse_listing(document)

    assert message in str(caught.value)


def test_listing_files_may_be_a_list(tmp_path: Path) -> None:
    listing = parse_listing({"files": [{"path": "a.py", "size": 1}]})

    assert [f.path for f in listing.files] == ["a.py"]
    assert listing.requirements == "requirements.txt"


def test_listing_null_requirements_means_none() -> None:
    assert parse_listing({"files": {}, "requirements": None}).requirements is None


def test_load_listing_absent_returns_none(tmp_path: Path) -> None:
    assert load_listing(tmp_path / "installed.json") is None


def test_load_listing_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "installed.json"
    path.write_text("{not json")

    with pytest.raises(ListingError) as caught:
        load_listing(path)

    assert str(caught.value).startswith(f"{path} is not valid JSON")


def test_load_listing_reads_written_file(tmp_path: Path) -> None:
    path = tmp_path / "installed.json"
    path.write_text(json.dumps(install(tmp_path / "app")))

    listing = load_listing(path)

    assert listing is not None
    assert listing.version == "3.0.0"
    assert len(listing.files) == 2

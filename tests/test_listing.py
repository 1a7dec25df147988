"""The installed listing on disk: format 2 written compactly, format 1 still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemate_setup.errors import ManifestError
from codemate_setup.listing import (
    LISTING_FORMAT,
    InstalledFile,
    InstalledListing,
    listing_from_document,
    load_listing,
    save_listing,
)
from codemate_setup.verify import appfiles

HASH_A = "a" * 64
HASH_B = "b" * 64
LISTING = InstalledListing(
    version="3.0.0",
    files={
        "main.py": InstalledFile(HASH_A, 12, 0o644, 1_700_000_000_000_000_000),
        "bin/run.sh": InstalledFile(HASH_B, 0, 0o755, 1_700_000_000_000_000_001),
    },
    entry_point="main.py",
    requirements="requirements.txt",
)


def format_1_document() -> dict:
    return {
        "format": 1,
        "version": "3.0.0",
        "entry_point": "main.py",
        "requirements": "requirements.txt",
        "files": {
            "main.py": {
                "sha256": HASH_A,
                "size": 12,
                "mode": "0644",
                "mtime_ns": 1_700_000_000_000_000_000,
            },
            "bin/run.sh": {
                "sha256": HASH_B,
                "size": 0,
                "mode": "0755",
                "mtime_ns": 1_700_000_000_000_000_001,
            },
        },
    }


def test_listing_is_saved_as_compact_format_2(tmp_path: Path) -> None:
    path = tmp_path / "installed.json"
    save_listing(path, LISTING)

    text = path.read_text()
    document = json.loads(text)

    assert "\n" not in text.rstrip("\n")
    assert document["format"] == LISTING_FORMAT == 2
    assert document["fields"] == ["sha256", "size", "mode", "mtime_ns"]
    assert document["files"]["bin/run.sh"] == [
        HASH_B,
        0,
        0o755,
        1_700_000_000_000_000_001,
    ]


def test_listing_round_trips_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "installed.json"
    save_listing(path, LISTING)

    assert load_listing(path) == LISTING


def test_listing_with_non_ascii_path_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "installed.json"
    files = {"données/café.py": InstalledFile(HASH_A, 3, 0o644, 1)}
    listing = InstalledListing(version="3.0.0", files=files)
    save_listing(path, listing)

    assert load_listing(path) == listing


def test_listing_of_format_1_is_still_read() -> None:
    assert listing_from_document(format_1_document()) == LISTING


def test_listing_without_files_is_read() -> None:
    listing = listing_from_document({"format": 2, "version": "1.0.0", "files": {}})

    assert listing.files == {}


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param([HASH_A, 12, 0o644], id="short"),
        pytest.param([HASH_A, 12, 0o644, 1, 2], id="long"),
        pytest.param({"sha256": HASH_A}, id="object"),
        pytest.param([HASH_A, "x", 0o644, 1], id="size-not-a-number"),
        pytest.param([HASH_A, 12, "0644", 1], id="mode-as-text"),
        pytest.param([HASH_A, 12, 0o200, 1], id="mode-unreadable"),
        pytest.param([HASH_A, 12, 0o4755, 1], id="mode-setuid"),
    ],
)
def test_listing_rejects_malformed_entry(entry: object) -> None:
    document = {"format": 2, "version": "3.0.0", "files": {"main.py": entry}}

    with pytest.raises((ValueError, TypeError)):
        listing_from_document(document)


@pytest.mark.parametrize("form", [None, 3, "2"])
def test_listing_of_unknown_format_is_rejected(form: object) -> None:
    document = {"format": form, "version": "3.0.0", "files": {}}

    with pytest.raises(ValueError, match="unknown listing format"):
        listing_from_document(document)


def test_listing_rejects_unsafe_path() -> None:
    document = {"format": 2, "files": {"../evil.py": [HASH_A, 1, 0o644, 1]}}

    with pytest.raises(ManifestError, match="'../evil.py'"):
        listing_from_document(document)


def test_invalid_listing_file_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "installed.json"
    path.write_text(json.dumps({"format": 2, "files": {"a.py": [HASH_A]}}))

    assert load_listing(path) is None
    assert "installed files will be hashed again" in caplog.text


def test_verification_reads_the_saved_listing(tmp_path: Path) -> None:
    path = tmp_path / "installed.json"
    save_listing(path, LISTING)

    listing = appfiles.load_listing(path)

    assert listing is not None
    assert {(f.path, f.size, f.sha256) for f in listing.files} == {
        ("main.py", 12, HASH_A),
        ("bin/run.sh", 0, HASH_B),
    }

"""Tests of part files, sidecars, Content-Range checks and the disk-space check."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from packaging.version import Version

from codemate_setup.download import DownloadItem, check_disk_space
from codemate_setup.download_run import PlannedItem
from codemate_setup.errors import InstallError
from codemate_setup.partial import (
    ContentRange,
    content_range_problem,
    parse_content_range,
    part_path,
    read_sidecar,
    sidecar_matches,
    sidecar_path,
    write_sidecar,
)

V1 = Version("1.0.0")
DIGEST = hashlib.sha256(b"content").hexdigest()


def make_item(dest: Path, sha256: str | None = DIGEST, size: int | None = 7):
    return DownloadItem(V1, "pkg/file.bin", dest, sha256, size)


def test_part_and_sidecar_sit_beside_dest(tmp_path) -> None:
    dest = tmp_path / "pkg" / "file.bin"

    assert part_path(dest) == tmp_path / "pkg" / "file.bin.part"
    assert sidecar_path(dest) == tmp_path / "pkg" / "file.bin.part.json"


def test_sidecar_round_trip_matches(tmp_path) -> None:
    item = make_item(tmp_path / "file.bin")

    write_sidecar(item)

    assert sidecar_matches(read_sidecar(item.dest), item)


@pytest.mark.parametrize(
    "changes",
    [
        {"sha256": "0" * 64},
        {"size": 8},
        {"version": Version("2.0.0")},
        {"path": "pkg/other.bin"},
    ],
    ids=["hash", "size", "version", "path"],
)
def test_sidecar_of_other_content_rejected(tmp_path, changes) -> None:
    item = make_item(tmp_path / "file.bin")
    write_sidecar(dataclasses.replace(item, **changes))

    assert not sidecar_matches(read_sidecar(item.dest), item)


def test_sidecar_never_matches_legacy_item(tmp_path) -> None:
    item = make_item(tmp_path / "file.bin", sha256=None, size=None)
    write_sidecar(item)

    assert not sidecar_matches(read_sidecar(item.dest), item)


def test_unreadable_sidecar_is_none(tmp_path) -> None:
    dest = tmp_path / "file.bin"
    sidecar_path(dest).write_text("{broken")

    assert read_sidecar(dest) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes 10-99/100", ContentRange(10, 99, 100)),
        ("bytes 0-0/1", ContentRange(0, 0, 1)),
        ("bytes 10-99/*", ContentRange(10, 99, None)),
        ("bytes 99-10/100", None),
        ("bytes 10-100/100", None),
        ("items 10-99/100", None),
        ("bytes */100", None),
        (None, None),
    ],
)
def test_parse_content_range_cases(header, expected) -> None:
    assert parse_content_range(header) == expected


@pytest.mark.parametrize(
    ("content_range", "offset", "total", "problem"),
    [
        (ContentRange(10, 99, 100), 10, 100, None),
        (ContentRange(10, 99, 100), 10, None, None),
        (None, 10, 100, "a missing or invalid Content-Range"),
        (ContentRange(0, 99, 100), 10, 100, "a Content-Range starting at byte 0"),
        (ContentRange(10, 99, None), 10, 100, "a Content-Range without the total"),
        (ContentRange(10, 99, 100), 10, 200, "a Content-Range total of 100 bytes"),
        (ContentRange(10, 50, 100), 10, 100, "a Content-Range ending at byte 50"),
    ],
    ids=["match", "match-unknown-size", "missing", "start", "no-total", "total", "end"],
)
def test_content_range_problem_cases(content_range, offset, total, problem) -> None:
    found = content_range_problem(content_range, offset, total)

    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(problem)


def plan(dest: Path, size: int | None, part_bytes: int = 0) -> PlannedItem:
    return PlannedItem(make_item(dest, size=size), part_bytes=part_bytes)


def test_disk_check_sums_remaining_bytes(tmp_path) -> None:
    plans = [
        plan(tmp_path / "a", 1000, part_bytes=400),
        plan(tmp_path / "b", 500),
        plan(tmp_path / "c", None),
    ]

    check_disk_space(plans, 100, disk_free=lambda folder: 1200)

    with pytest.raises(InstallError) as caught:
        check_disk_space(plans, 100, disk_free=lambda folder: 1199)
    assert str(caught.value) == (
        f"not enough free disk space in {tmp_path}: the download needs 1200 bytes "
        "(1100 to download plus a reserve of 100), but only 1199 bytes are free; "
        "free up disk space and run the update again"
    )


def test_disk_check_uses_existing_ancestor(tmp_path) -> None:
    requested_folders: list[Path] = []

    def free(folder: Path) -> int:
        requested_folders.append(folder)
        return 10**9

    check_disk_space([plan(tmp_path / "new" / "deep" / "a", 10)], 0, disk_free=free)

    assert requested_folders == [tmp_path]


def test_disk_check_skips_reused_items(tmp_path) -> None:
    reused = PlannedItem(make_item(tmp_path / "a", size=10**12), reused=True)

    check_disk_space([reused], 0, disk_free=lambda folder: 0)

"""Manifest parsing and validation: every invalid value rejects the whole manifest."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from packaging.version import Version

from codemate_setup.config import Limits
from codemate_setup.errors import ManifestError
from codemate_setup.manifest import (
    ManifestEntry,
    all_folders,
    check_layout,
    format_mode,
    parent_folders,
    parse_manifest,
    parse_mode,
)

V3 = Version("3.0.0")
HASH_A = "a" * 64
HASH_B = "b" * 64


def full_manifest(**overrides: Any) -> dict[str, Any]:
    document = {
        "version": "3.0.0",
        "previous_version": "2.9.0",
        "codebase": {
            "files_add": ["new.py"],
            "files_edit": ["main.py"],
            "files_delete": ["old.py"],
        },
        "files": [
            {"path": "main.py", "sha256": HASH_A, "size": 10, "mode": "0644"},
            {"path": "pkg/new.py", "sha256": HASH_B, "size": 0, "mode": "0755"},
        ],
        "requirements": "requirements.txt",
        "entry_point": "main.py",
    }
    document.update(overrides)
    return document


def with_file(entry: dict[str, Any]) -> dict[str, Any]:
    document = full_manifest()
    document["files"] = [*document["files"], entry]
    return document


def parse(document: Any, limits: Limits | None = None) -> Any:
    return parse_manifest(document, expected_version=V3, limits=limits or Limits())


def test_manifest_full_listing_parsed() -> None:
    manifest = parse(full_manifest())

    assert manifest.is_full
    assert manifest.files == (
        ManifestEntry("main.py", HASH_A, 10, 0o644),
        ManifestEntry("pkg/new.py", HASH_B, 0, 0o755),
    )
    assert manifest.previous_version == Version("2.9.0")
    assert manifest.requirements == "requirements.txt"
    assert manifest.entry_point == "main.py"


def test_manifest_legacy_plain_paths() -> None:
    document = full_manifest()
    del document["files"]

    manifest = parse(document)

    assert not manifest.is_full
    assert manifest.added == (ManifestEntry("new.py"),)
    assert manifest.edited == (ManifestEntry("main.py"),)
    assert manifest.deleted == ("old.py",)


def test_manifest_legacy_entry_objects() -> None:
    document = {
        "version": "v3.0.0",
        "codebase": {"files_add": [{"path": "a.py", "sha256": HASH_A.upper()}]},
    }

    manifest = parse(document)

    assert manifest.added == (ManifestEntry("a.py", HASH_A, None, None),)


HOSTILE_PATHS = [
    pytest.param("../evil.py", id="parent"),
    pytest.param("pkg/../../evil.py", id="inner-parent"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("C:/Windows/evil.dll", id="drive-letter"),
    pytest.param("c:evil.py", id="drive-relative"),
    pytest.param("//server/share/evil.py", id="unc-slashes"),
    pytest.param("\\\\server\\share\\evil.py", id="unc-backslashes"),
    pytest.param("pkg\\evil.py", id="backslash"),
    pytest.param("evil\x00.py", id="nul"),
    pytest.param("./main.py", id="dot"),
    pytest.param("pkg//main.py", id="empty-part"),
    pytest.param("", id="empty"),
    pytest.param(42, id="not-a-string"),
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_manifest_rejects_hostile_file_path(path: object) -> None:
    document = with_file({"path": path, "sha256": HASH_A, "size": 1})

    with pytest.raises(ManifestError) as caught:
        parse(document)

    assert "invalid manifest for release 3.0.0" in str(caught.value)
    assert "path" in str(caught.value)


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_manifest_rejects_hostile_legacy_path(path: object) -> None:
    document = {"version": "3.0.0", "codebase": {"files_delete": [path]}}

    with pytest.raises(ManifestError):
        parse(document)


@pytest.mark.parametrize("key", ["requirements", "entry_point"])
def test_manifest_rejects_hostile_metadata_path(key: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse(full_manifest(**{key: "../../etc/passwd"}))

    assert "../../etc/passwd" in str(caught.value)


def test_manifest_rejects_duplicate_path() -> None:
    document = with_file({"path": "main.py", "sha256": HASH_B, "size": 1})

    with pytest.raises(ManifestError) as caught:
        parse(document)

    assert "'main.py' more than once" in str(caught.value)


def test_manifest_rejects_path_in_two_lists() -> None:
    document = full_manifest()
    document["codebase"]["files_delete"] = ["main.py"]

    with pytest.raises(ManifestError) as caught:
        parse(document)

    assert "'main.py' more than once" in str(caught.value)


def test_manifest_rejects_file_also_folder() -> None:
    document = with_file({"path": "main.py/inner.py", "sha256": HASH_B, "size": 1})

    with pytest.raises(ManifestError) as caught:
        parse(document)

    assert "listed as a file and also as the folder" in str(caught.value)


def test_manifest_rejects_size_beyond_limit() -> None:
    limits = Limits(max_file_bytes=1000)
    document = with_file({"path": "big.bin", "sha256": HASH_B, "size": 1001})

    with pytest.raises(ManifestError) as caught:
        parse(document, limits)

    assert "files[2].size is 1001 bytes" in str(caught.value)
    assert "limit of 1000" in str(caught.value)


def test_manifest_rejects_terabyte_size_by_default() -> None:
    document = with_file({"path": "big.bin", "sha256": HASH_B, "size": 10**13})

    with pytest.raises(ManifestError) as caught:
        parse(document)

    assert "per-file limit" in str(caught.value)


@pytest.mark.parametrize("size", [-1, True, "10", 1.5, None])
def test_manifest_rejects_invalid_size(size: object) -> None:
    document = with_file({"path": "x.bin", "sha256": HASH_B, "size": size})

    with pytest.raises(ManifestError) as caught:
        parse(document)

    assert "files[2].size must be a byte count" in str(caught.value)


@pytest.mark.parametrize(
    "digest",
    ["a" * 63, "a" * 65, "g" * 64, "", None, 123, "a" * 63 + "\n"],
    ids=["short", "long", "not-hex", "empty", "missing", "number", "newline"],
)
def test_manifest_rejects_invalid_hash(digest: object) -> None:
    document = with_file({"path": "x.bin", "sha256": digest, "size": 1})

    with pytest.raises(ManifestError) as caught:
        parse(document)

    assert "files[2].sha256 must be 64 hexadecimal characters" in str(caught.value)


@pytest.mark.parametrize("mode", ["4755", "0999", "755x", 420, "0200", "07777"])
def test_manifest_rejects_invalid_mode(mode: object) -> None:
    document = with_file({"path": "x.bin", "sha256": HASH_B, "size": 1, "mode": mode})

    with pytest.raises(ManifestError) as caught:
        parse(document)

    assert "files[2].mode" in str(caught.value)


def test_manifest_rejects_other_version() -> None:
    with pytest.raises(ManifestError) as caught:
        parse(full_manifest(version="3.0.1"))

    assert "declares version 3.0.1, but 3.0.0 was requested" in str(caught.value)


@pytest.mark.parametrize("version", ["../../etc", "3.0.0; rm -rf", "", None])
def test_manifest_rejects_invalid_version(version: object) -> None:
    with pytest.raises(ManifestError):
        parse(full_manifest(version=version))


def test_manifest_rejects_too_many_files() -> None:
    document = full_manifest()
    document["files"] = [
        {"path": f"f{i}.py", "sha256": HASH_A, "size": 1} for i in range(11)
    ]

    with pytest.raises(ManifestError) as caught:
        parse(document, Limits(max_files=10))

    assert "lists 11 files, more than the limit of 10" in str(caught.value)


def test_manifest_rejects_too_many_legacy_paths() -> None:
    document = {
        "version": "3.0.0",
        "codebase": {"files_add": [f"f{i}.py" for i in range(11)]},
    }

    with pytest.raises(ManifestError) as caught:
        parse(document, Limits(max_files=10))

    assert "lists 11 paths" in str(caught.value)


@pytest.mark.parametrize(
    "document",
    [[], "text", None, {"version": "3.0.0"}, {"version": "3.0.0", "files": {}}],
    ids=["list", "string", "null", "no-files", "files-object"],
)
def test_manifest_rejects_wrong_shape(document: object) -> None:
    with pytest.raises(ManifestError):
        parse(copy.deepcopy(document))


def test_manifest_error_names_next_action() -> None:
    with pytest.raises(ManifestError) as caught:
        parse(with_file({"path": "../x", "sha256": HASH_A, "size": 1}))

    assert "cannot be installed until its publisher fixes it" in str(caught.value)


def test_parse_mode_round_trip() -> None:
    assert parse_mode("0755") == 0o755
    assert parse_mode("644") == 0o644
    assert format_mode(0o755) == "0755"


def test_parent_folders_shallowest_first() -> None:
    assert parent_folders("a/b/c.py") == ["a", "a/b"]
    assert parent_folders("c.py") == []


def test_check_layout_accepts_siblings() -> None:
    check_layout(["a/b.py", "a/c.py", "ab.py"])


def test_manifest_large_listing_is_parsed_like_small_one() -> None:
    # A listing in which every entry is valid is checked a field at a time.
    # The entries must come out as the per-entry checks make them.
    files = [
        {"path": f"pkg{i % 7}/m{i}.py", "sha256": f"{i:064X}", "size": i, "mode": "644"}
        for i in range(500)
    ]
    files[3].pop("mode")

    manifest = parse(full_manifest(files=files))

    assert manifest.files is not None
    assert manifest.files[0] == ManifestEntry("pkg0/m0.py", f"{0:064x}", 0, 0o644)
    assert manifest.files[3] == ManifestEntry("pkg3/m3.py", f"{3:064x}", 3, None)
    assert [entry.path for entry in manifest.files] == [f["path"] for f in files]


def test_manifest_reports_first_invalid_entry_in_listing_order() -> None:
    document = full_manifest()
    document["files"][0]["sha256"] = "not a hash"
    document["files"][1]["path"] = "../evil.py"

    with pytest.raises(ManifestError) as caught:
        parse(document)

    assert "files[0].sha256 must be 64 hexadecimal characters" in str(caught.value)


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(["main.py", HASH_A, 1], id="array"),
        pytest.param("main.py", id="string"),
        pytest.param({"path": "x.py", "sha256": HASH_A}, id="no-size"),
        pytest.param({"path": "x.py", "size": 1}, id="no-hash"),
        pytest.param(
            {"path": "x.py", "sha256": HASH_A, "size": 1, "mode": []}, id="mode-list"
        ),
    ],
)
def test_manifest_rejects_malformed_listing_entry(entry: object) -> None:
    with pytest.raises(ManifestError) as caught:
        parse(with_file(entry))

    assert "files[2]" in str(caught.value)


def test_check_layout_names_folder_and_file() -> None:
    with pytest.raises(ValueError) as caught:
        check_layout(["a/b.py", "a", "c/d/e.py", "c/d"])

    assert str(caught.value) == (
        "the path 'a' is listed as a file and also as the folder of 'a/b.py'"
    )


def test_all_folders_lists_every_level_once() -> None:
    assert all_folders(["a/b/c.py", "a/b/d.py", "a/e.py", "f.py"]) == {"a", "a/b"}

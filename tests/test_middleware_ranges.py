"""Range requests and If-Range on the reference middleware."""

from __future__ import annotations

import pytest
import requests

from codemate_setup.middleware.routing import (
    ByteRange,
    RangeNotSatisfiable,
    etag_in,
    if_range_allows,
    parse_range,
)
from codemate_setup.publish import publish_release

CONTENT = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable
SIZE = len(CONTENT)


@pytest.fixture
def served(tmp_path, make_tree, start_middleware):
    releases = tmp_path / "releases"
    tree = make_tree(tmp_path / "src", {"data.bin": CONTENT, "empty.bin": b""})
    publish_release(tree, "1.0.0", releases, durable=False)
    return start_middleware(releases)


def fetch(handle, headers: dict[str, str], name: str = "data.bin"):
    return requests.get(
        f"{handle.url}/download/v1.0.0/{name}", headers=headers, timeout=10
    )


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, SIZE - 1),
        ("bytes=1023-1023", 1023, 1023),
        ("bytes=1000-5000", 1000, SIZE - 1),
        ("bytes=-10", SIZE - 10, SIZE - 1),
        ("bytes=-5000", 0, SIZE - 1),
        ("BYTES = 5-6", 5, 6),
    ],
    ids=[
        "first-byte",
        "prefix",
        "open-end",
        "last-byte",
        "end-clamped",
        "suffix",
        "suffix-longer-than-file",
        "unit-case-and-spaces",
    ],
)
def test_range_gets_206(served, header, start, end):
    response = fetch(served, {"Range": header})

    assert response.status_code == 206
    assert response.content == CONTENT[start : end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert response.headers["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize(
    ("header", "name", "size"),
    [
        ("bytes=1024-", "data.bin", SIZE),
        ("bytes=5000-6000", "data.bin", SIZE),
        ("bytes=-0", "data.bin", SIZE),
        ("bytes=0-", "empty.bin", 0),
        ("bytes=-5", "empty.bin", 0),
    ],
    ids=[
        "start-at-end",
        "start-past-end",
        "zero-suffix",
        "empty-file",
        "empty-file-suffix",
    ],
)
def test_unsatisfiable_range_gets_416(served, header, name, size):
    response = fetch(served, {"Range": header}, name)

    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"
    assert response.json()["status"] == 416
    assert "not satisfiable" in response.json()["error"]


@pytest.mark.parametrize(
    "header",
    ["bytes=0-1,5-6", "items=0-5", "bytes=abc", "bytes=9-3", "bytes=-", "bytes"],
    ids=["multi-range", "other-unit", "garbage", "end-before-start", "dash", "bare"],
)
def test_ignored_range_gets_whole_file(served, header):
    response = fetch(served, {"Range": header})

    assert response.status_code == 200
    assert response.content == CONTENT
    assert "Content-Range" not in response.headers


def test_if_range_matching_etag_applies(served):
    etag = fetch(served, {}).headers["ETag"]

    response = fetch(served, {"Range": "bytes=10-19", "If-Range": etag})

    assert response.status_code == 206
    assert response.content == CONTENT[10:20]


def test_if_range_stale_etag_gets_whole(served):
    response = fetch(served, {"Range": "bytes=10-19", "If-Range": '"old"'})

    assert response.status_code == 200
    assert response.content == CONTENT


def test_if_range_date_gets_whole(served):
    response = fetch(
        served,
        {"Range": "bytes=10-19", "If-Range": "Mon, 01 Jan 2024 00:00:00 GMT"},
    )

    assert response.status_code == 200
    assert response.content == CONTENT


def test_range_head_sends_headers_only(served):
    response = requests.head(
        f"{served.url}/download/v1.0.0/data.bin",
        headers={"Range": "bytes=0-9"},
        timeout=10,
    )

    assert response.status_code == 206
    assert response.headers["Content-Length"] == "10"
    assert response.content == b""


def test_resume_joins_to_whole_file(served):
    first = fetch(served, {"Range": "bytes=0-499"}).content
    rest = fetch(served, {"Range": f"bytes={len(first)}-"}).content

    assert first + rest == CONTENT


def test_parse_range_absent_header():
    assert parse_range(None, 10) is None


def test_parse_range_clamps_end():
    assert parse_range("bytes=5-100", 10) == ByteRange(5, 9)


def test_parse_range_suffix_on_empty():
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-1", 0)


def test_byte_range_length_inclusive():
    assert ByteRange(3, 3).length == 1


def test_etag_in_weak_comparison():
    assert etag_in('W/"a", "b"', '"a"')


def test_etag_in_star_matches():
    assert etag_in("*", '"a"')


def test_etag_in_other_tag():
    assert not etag_in('"b"', '"a"')


def test_if_range_rejects_weak_tag():
    assert not if_range_allows('W/"a"', '"a"')

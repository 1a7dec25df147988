"""Hostile request paths, sent byte for byte over a raw socket.

Every case must be rejected without serving a byte from outside the release's
file tree: not the release's own manifest one folder up, not a file beside
the releases folder, not a file reached through a symbolic link.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from codemate_setup.publish import publish_release

SECRET = b"TOP-SECRET-OUTSIDE-THE-RELEASE"


def raw_request(port: int, target: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one GET with ``target`` exactly as given and read the whole response."""
    request = (
        b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.fixture
def hostile_setup(tmp_path, make_tree, start_middleware):
    """A release with links and a FIFO planted in its tree, and secrets outside."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET)

    releases = tmp_path / "releases"
    tree = make_tree(tmp_path / "src", {"a.txt": "inside", "sub/b.txt": "inside"})
    publish_release(tree, "1.0.0", releases, durable=False)

    files = releases / "1.0.0" / "files"
    (files / "link_out").symlink_to(tmp_path / "secret.txt")
    (files / "dir_out").symlink_to(tmp_path / "outside", target_is_directory=True)
    (files / "sub" / "link_up").symlink_to(Path("..") / ".." / "manifest.json")
    (files / "link_in").symlink_to("a.txt")
    if hasattr(os, "mkfifo"):
        os.mkfifo(files / "fifo")
    return start_middleware(releases)


def assert_nothing_leaked(body: bytes) -> None:
    assert SECRET not in body
    assert b'"files_add"' not in body
    assert b"published_at" not in body


HOSTILE_TARGETS = [
    ("dot-dot", b"/download/v1.0.0/../manifest.json", 400),
    ("dot-dot-nested", b"/download/v1.0.0/sub/../../manifest.json", 400),
    ("dot-dot-to-secret", b"/download/v1.0.0/../../../secret.txt", 400),
    ("encoded-dots", b"/download/v1.0.0/%2e%2e/manifest.json", 400),
    ("encoded-dots-upper", b"/download/v1.0.0/%2E%2E/manifest.json", 400),
    ("encoded-slash", b"/download/v1.0.0/..%2fmanifest.json", 400),
    ("all-encoded", b"/download/v1.0.0/%2e%2e%2f%2e%2e%2fsecret.txt", 400),
    ("encoded-in-version", b"/download/v1.0.0%2f..%2f..%2fsecret.txt", 400),
    ("dots-as-version", b"/download/../1.0.0/a.txt", 400),
    ("encoded-version", b"/download/%2e%2e/a.txt", 400),
    ("single-dot", b"/download/v1.0.0/./a.txt", 400),
    ("empty-part", b"/download/v1.0.0/sub//b.txt", 400),
    ("absolute", b"/download/v1.0.0//etc/passwd", 400),
    ("absolute-encoded", b"/download/v1.0.0/%2Fetc%2Fpasswd", 400),
    ("backslash", b"/download/v1.0.0/..\\..\\secret.txt", 400),
    ("backslash-encoded", b"/download/v1.0.0/..%5C..%5Csecret.txt", 400),
    ("drive-letter", b"/download/v1.0.0/C:/Windows/win.ini", 400),
    ("nul-encoded", b"/download/v1.0.0/a.txt%00.png", 400),
    ("nul-raw", b"/download/v1.0.0/a.txt\x00", 400),
    ("control-char", b"/download/v1.0.0/a%0a.txt", 400),
    ("overlong-utf8-dots", b"/download/v1.0.0/%c0%ae%c0%ae/manifest.json", 400),
    ("invalid-utf8", b"/download/v1.0.0/%ff.txt", 400),
    ("double-encoded", b"/download/v1.0.0/%252e%252e/manifest.json", 404),
    ("absolute-form", b"http://127.0.0.1/download/v1.0.0/../manifest.json", 400),
    ("long-path", b"/download/v1.0.0/" + b"a" * 2000, 400),
    ("link-to-file-outside", b"/download/v1.0.0/link_out", 404),
    ("link-to-folder-outside", b"/download/v1.0.0/dir_out/secret.txt", 404),
    ("link-to-manifest", b"/download/v1.0.0/sub/link_up", 404),
    ("link-inside-tree", b"/download/v1.0.0/link_in", 404),
    ("manifest-dot-dot", b"/manifest/v1.0.0/../../secret.txt", 404),
    ("codebase-dot-dot", b"/codebase/..%2f..%2fsecret.txt", 404),
]


@pytest.mark.parametrize(
    ("target", "status"),
    [(target, status) for _, target, status in HOSTILE_TARGETS],
    ids=[name for name, _, _ in HOSTILE_TARGETS],
)
def test_hostile_target_rejected(hostile_setup, target, status):
    got_status, headers, body = raw_request(hostile_setup.port, target)

    assert got_status == status
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["status"] == status
    assert_nothing_leaked(body)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need POSIX")
def test_fifo_in_tree_not_served(hostile_setup):
    status, _, body = raw_request(hostile_setup.port, b"/download/v1.0.0/fifo")

    assert status == 404
    assert_nothing_leaked(body)


def test_hostile_error_names_the_rule(hostile_setup):
    _, _, body = raw_request(hostile_setup.port, b"/download/v1.0.0/%2e%2e/x")

    assert "'..' parts" in json.loads(body)["error"]


def test_server_survives_hostile_requests(hostile_setup):
    for _, target, _ in HOSTILE_TARGETS:
        raw_request(hostile_setup.port, target)

    status, _, body = raw_request(hostile_setup.port, b"/download/v1.0.0/a.txt")

    assert status == 200
    assert body == b"inside"


def test_hostile_requests_are_recorded(hostile_setup):
    raw_request(hostile_setup.port, b"/download/v1.0.0/%2e%2e/manifest.json")

    record = hostile_setup.requests[-1]
    assert record.status == 400
    assert record.path == "/download/v1.0.0/%2e%2e/manifest.json"


def test_malformed_request_line_gets_json_400(hostile_setup):
    with socket.create_connection(("127.0.0.1", hostile_setup.port), timeout=10) as s:
        s.sendall(b"GET /download/v1.0.0/a b.txt HTTP/1.1\r\n\r\n")
        response = b"".join(iter(lambda: s.recv(65536), b""))

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["status"] == 400
    assert "Bad request syntax" in json.loads(body)["error"]

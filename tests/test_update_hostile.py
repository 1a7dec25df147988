"""Hostile manifests are rejected before anything in the install changes."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from update_helpers import (
    install_home,
    installed_tree,
    installed_version,
    publish,
    publish_releases,
    read_state,
    run_cli,
    tree_snapshot,
)

from codemate_setup.middleware import MiddlewareHandle

OLD_FILES = {
    "initiate.py": "print('1.0.0')\n",
    "codemate/core.py": "old = 1\n",
    "unchanged.txt": "same in both\n",
}
NEW_FILES = {
    "initiate.py": "print('1.1.0')\n",
    "codemate/core.py": "new = 1\n",
    "unchanged.txt": "same in both\n",
}
USER_FILE = ".env"


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    versions = {"1.0.0": OLD_FILES, "1.1.0": NEW_FILES}
    return publish_releases(tmp_path / "releases", versions)


@pytest.fixture
def home(tmp_path: Path, server: MiddlewareHandle) -> Path:
    """A home with 1.0.0 installed and a user file in the install folder."""
    return install_home(tmp_path / "home", server, "1.0.0", {USER_FILE: "TOKEN=1\n"})


def rewrite_manifest(releases: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = releases / "1.1.0" / "manifest.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def add_entry(**entry: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["files"].append(entry)

    return change


def assert_unchanged(home: Path, releases: Path) -> None:
    expected = tree_snapshot(releases / "1.0.0" / "files")
    assert installed_tree(home, (USER_FILE,)) == expected
    assert (home / "app" / USER_FILE).read_text() == "TOKEN=1\n"
    assert installed_version(home) == "1.0.0"
    assert not (home / "journal.json").exists()


HASH = "0" * 64
HOSTILE = [
    pytest.param(
        add_entry(path="../evil.py", sha256=HASH, size=1), "'../evil.py'", id="parent"
    ),
    pytest.param(
        add_entry(path="/etc/passwd", sha256=HASH, size=1),
        "must be relative",
        id="absolute",
    ),
    pytest.param(
        add_entry(path="C:/Windows/evil.dll", sha256=HASH, size=1),
        "drive letter",
        id="drive-letter",
    ),
    pytest.param(
        add_entry(path="//server/share/evil.py", sha256=HASH, size=1),
        "must be relative",
        id="unc",
    ),
    pytest.param(
        add_entry(path="codemate\\evil.py", sha256=HASH, size=1),
        "backslash",
        id="backslash",
    ),
    pytest.param(
        add_entry(path="evil\x00.py", sha256=HASH, size=1), "NUL", id="nul-byte"
    ),
    pytest.param(
        add_entry(path="initiate.py", sha256=HASH, size=1),
        "more than once",
        id="duplicate",
    ),
    pytest.param(
        add_entry(path="huge.bin", sha256=HASH, size=10**14),
        "per-file limit",
        id="size-beyond-limit",
    ),
    pytest.param(
        add_entry(path="x.py", sha256="not-a-hash", size=1),
        "64 hexadecimal characters",
        id="hash-format",
    ),
    pytest.param(
        lambda document: document.update(version="9.9.9"),
        "declares version 9.9.9, but 1.1.0 was requested",
        id="other-version",
    ),
]


@pytest.mark.parametrize(("change", "message"), HOSTILE)
def test_hostile_manifest_rejected(
    home: Path,
    releases: Path,
    server: MiddlewareHandle,
    change: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    rewrite_manifest(releases, change)

    done = run_cli("1.1.0", "--home", str(home), "--middleware-url", server.url)

    assert done.returncode == 1
    assert "invalid manifest for release 1.1.0" in done.stderr
    assert message in done.stderr
    assert [r for r in server.requests if r.path.startswith("/download/")] == []
    assert_unchanged(home, releases)
    state = read_state(home)
    assert state["overall_status"] == "failed"
    assert state["error_details"].startswith("codebase_update: invalid manifest")


def test_hostile_legacy_delete_rejected(
    home: Path,
    releases: Path,
    start_middleware: Callable[..., MiddlewareHandle],
) -> None:
    def change(document: dict[str, Any]) -> None:
        document["codebase"]["files_delete"] = ["../../etc/passwd"]

    rewrite_manifest(releases, change)
    legacy = start_middleware(releases, legacy=True)

    done = run_cli("1.1.0", "--home", str(home), "--middleware-url", legacy.url)

    assert done.returncode == 1
    assert "'../../etc/passwd'" in done.stderr
    assert_unchanged(home, releases)


def test_wrong_hash_rejected(home: Path, releases: Path, server: MiddlewareHandle):
    wrong = hashlib.sha256(b"something else").hexdigest()

    def change(document: dict[str, Any]) -> None:
        for entry in document["files"]:
            if entry["path"] == "codemate/core.py":
                entry["sha256"] = wrong

    rewrite_manifest(releases, change)

    done = run_cli("1.1.0", "--home", str(home), "--middleware-url", server.url)

    assert done.returncode == 1
    assert "codemate/core.py" in done.stderr
    assert_unchanged(home, releases)


@pytest.mark.parametrize("path", ["codemate/core.py", "unchanged.txt"])
def test_declared_size_far_larger_rejected(
    home: Path, releases: Path, server: MiddlewareHandle, path: str
):
    def change(document: dict[str, Any]) -> None:
        for entry in document["files"]:
            if entry["path"] == path:
                entry["size"] = 50 * 1024 * 1024

    rewrite_manifest(releases, change)

    done = run_cli("1.1.0", "--home", str(home), "--middleware-url", server.url)

    assert done.returncode == 1
    assert path in done.stderr
    assert_unchanged(home, releases)
    staged = list((home / "staging").rglob("*"))
    assert all(p.is_dir() or p.stat().st_size < 1024 for p in staged)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_symlink_out_of_install_rejected(
    home: Path, releases: Path, tmp_path: Path, server: MiddlewareHandle
):
    publish(releases, "1.2.0", dict(NEW_FILES, **{"plugins/evil.py": "pwned\n"}))
    outside = tmp_path / "outside"
    outside.mkdir()
    (home / "app" / "plugins").symlink_to(outside, target_is_directory=True)

    done = run_cli("1.2.0", "--home", str(home), "--middleware-url", server.url)

    assert done.returncode == 1
    assert "'plugins/evil.py'" in done.stderr
    assert "resolves outside" in done.stderr
    assert list(outside.iterdir()) == []
    assert installed_version(home) == "1.0.0"
    assert [r for r in server.requests if r.path.startswith("/download/")] == []


class _HugeManifestHandler(BaseHTTPRequestHandler):
    """Serves a release list and a manifest of hundreds of megabytes."""

    manifest_bytes = 300 * 1024 * 1024
    sent: list[int] = []

    def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
        if self.path.startswith("/health"):
            self._json({"status": "ok"})
        elif self.path.startswith("/releases"):
            self._json([{"version": "1.0.0"}, {"version": "1.1.0"}])
        elif self.path.startswith("/codebase/"):
            self._json({"version": "1.1.0"})
        elif self.path.startswith("/manifest/"):
            self._stream_huge()
        else:
            self.send_error(404)

    def _json(self, document: Any) -> None:
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream_huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(self.manifest_bytes))
        self.end_headers()
        chunk = b" " * (1024 * 1024)
        sent = 0
        try:
            self.wfile.write(b'{"version": "1.1.0", "pad": "')
            while sent < self.manifest_bytes:
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        self.sent.append(sent)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def huge_manifest_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HugeManifestHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_huge_manifest_rejected(
    home: Path, releases: Path, huge_manifest_server: str
) -> None:
    done = run_cli(
        "1.1.0", "--home", str(home), "--middleware-url", huge_manifest_server
    )

    assert done.returncode == 1
    assert "manifest" in done.stderr
    assert_unchanged(home, releases)
    assert all(sent < 100 * 1024 * 1024 for sent in _HugeManifestHandler.sent)

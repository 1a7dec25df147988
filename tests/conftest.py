"""Fixtures shared by the test suite: source trees, releases and middlewares.

- ``make_tree(root, files, modes=None)``: write a tree of files (a plain
  function, importable with ``from conftest import make_tree``, and a fixture).
- ``installed_record(root, path)``: the installed-listing record of a file as
  it is on disk (a plain function).
- ``start_middleware(releases_dir, **options)``: a factory fixture that starts
  the reference middleware and stops it at teardown.
- ``example_releases``: a releases folder with the bundled example releases
  2.9.0 and 3.0.0 published into it.
- ``middleware``: a running middleware serving ``example_releases``.
- ``server``: a running middleware serving the ``releases`` fixture, which
  each module that uses ``server`` defines itself.
- An autouse guard that fails any socket connection to a non-loopback address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from codemate_setup.listing import InstalledFile
from codemate_setup.middleware import MiddlewareHandle
from codemate_setup.middleware import start_middleware as _start_middleware
from codemate_setup.publish import publish_release

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples" / "releases-src"
EXAMPLE_VERSIONS = ("2.9.0", "3.0.0")


def make_tree(
    root: Path,
    files: Mapping[str, bytes | str],
    modes: Mapping[str, int] | None = None,
) -> Path:
    """Write ``files`` (release path to content) under ``root``.

    Text content is written as UTF-8. ``modes`` maps some of the paths to a
    permission mode such as ``0o755``. Returns ``root``.
    """
    root.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        target = root.joinpath(*path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8") if isinstance(content, str) else content
        target.write_bytes(data)
        if modes and path in modes:
            target.chmod(modes[path])
    return root


def installed_record(root: Path, path: str) -> InstalledFile:
    """Return the listing record of the file at release path ``path`` under ``root``."""
    file = root.joinpath(*path.split("/"))
    info = file.stat()
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    return InstalledFile(digest, info.st_size, info.st_mode & 0o777, info.st_mtime_ns)


@pytest.fixture(name="make_tree")
def _make_tree_fixture() -> Callable[..., Path]:
    """The :func:`make_tree` helper, as a fixture."""
    return make_tree


@pytest.fixture(name="start_middleware")
def _start_middleware_fixture() -> Iterator[Callable[..., MiddlewareHandle]]:
    """Start middlewares with ``start_middleware(releases_dir, **options)``.

    Every middleware started through the factory is stopped at teardown.
    """
    handles: list[MiddlewareHandle] = []

    def start(releases_dir: Path, **options: Any) -> MiddlewareHandle:
        handle = _start_middleware(releases_dir, **options)
        handles.append(handle)
        return handle

    yield start

    for handle in handles:
        handle.stop()


@pytest.fixture
def example_releases(tmp_path: Path) -> Path:
    """A releases folder holding the example releases 2.9.0 and 3.0.0."""
    releases = tmp_path / "releases"
    for version in EXAMPLE_VERSIONS:
        publish_release(EXAMPLES_DIR / version, version, releases, durable=False)
    return releases


@pytest.fixture
def middleware(
    example_releases: Path, start_middleware: Callable[..., MiddlewareHandle]
) -> MiddlewareHandle:
    """A running middleware that serves :func:`example_releases`."""
    return start_middleware(example_releases)


@pytest.fixture
def server(
    releases: Path, start_middleware: Callable[..., MiddlewareHandle]
) -> MiddlewareHandle:
    """A running middleware that serves the requesting module's ``releases``."""
    return start_middleware(releases)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection from the test process to a non-loopback address."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> Any:
        _check_loopback(self, address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        _check_loopback(self, address)
        return original_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


def _check_loopback(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = str(address[0])
    if host == "localhost":
        return
    try:
        is_loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback:
        raise ConnectionRefusedError(
            f"tests may connect to loopback addresses only, not {host!r}"
        )

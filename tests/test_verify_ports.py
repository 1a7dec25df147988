"""Tests of the port checks with real listeners on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from verify_support import free_service_ports

from codemate_setup.verify.model import CheckStatus
from codemate_setup.verify.ports import (
    SERVICES,
    BindState,
    PortProbeSettings,
    bind_state,
    check_assignments,
    check_port,
    check_ports,
)

SETTINGS = PortProbeSettings(connect_timeout=0.2, read_timeout=0.5)
# Response of a handler, (status, body), for a request path.
Responder = Callable[[str], "tuple[int, bytes]"]


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


@contextlib.contextmanager
def http_server(respond: Responder, address: str = "127.0.0.1") -> Iterator[int]:
    """Serve ``respond`` over HTTP on a free port of ``address``; yield the port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = respond(self.path)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server_class = _IPv6Server if ":" in address else ThreadingHTTPServer
    server = server_class((address, 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def tcp_listener() -> Iterator[int]:
    """Listen on a free loopback port without ever responding."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def qdrant(path: str) -> tuple[int, bytes]:
    if path == "/healthz":
        return 200, b"healthz check passed"
    return 404, b"not found"


def ollama(path: str) -> tuple[int, bytes]:
    if path == "/api/version":
        return 200, json.dumps({"version": "0.5.7"}).encode()
    return 404, b"404 page not found"


def test_free_port_is_ok() -> None:
    port = free_port()

    result = check_port(SERVICES["QDRANT_PORT"], port, SETTINGS)

    assert result.status is CheckStatus.OK
    assert result.value.startswith("free on 127.0.0.1")


def test_expected_qdrant_is_ok() -> None:
    with http_server(qdrant) as port:
        result = check_port(SERVICES["QDRANT_PORT"], port, SETTINGS)

    assert result.status is CheckStatus.OK
    assert result.value == "held by Qdrant on 127.0.0.1"


def test_expected_ollama_is_ok() -> None:
    with http_server(ollama) as port:
        result = check_port(SERVICES["OLLAMA_PORT"], port, SETTINGS)

    assert result.status is CheckStatus.OK
    assert result.value == "held by Ollama 0.5.7 on 127.0.0.1"


def test_other_http_server_is_conflict() -> None:
    with http_server(ollama) as port:
        result = check_port(SERVICES["QDRANT_PORT"], port, SETTINGS)

    assert result.status is CheckStatus.FAIL
    assert f"pid {os.getpid()}" in result.value
    assert "which is not Qdrant (HTTP 404 at /healthz)" in result.value
    assert result.action == "stop that process, or set QDRANT_PORT to a free port"


def test_catch_all_server_is_not_mistaken() -> None:
    with http_server(lambda path: (200, b"healthz check passed")) as port:
        result = check_port(SERVICES["QDRANT_PORT"], port, SETTINGS)

    assert result.status is CheckStatus.FAIL
    assert "it responds with HTTP 200 to any path" in result.value


def test_catch_all_json_server_is_not_ollama() -> None:
    body = json.dumps({"version": "1"}).encode()
    with http_server(lambda path: (200, body)) as port:
        result = check_port(SERVICES["OLLAMA_PORT"], port, SETTINGS)

    assert result.status is CheckStatus.FAIL


def test_service_requiring_auth_is_warning() -> None:
    with http_server(lambda path: (401, b"unauthorized")) as port:
        result = check_port(SERVICES["QDRANT_PORT"], port, SETTINGS)

    assert result.status is CheckStatus.WARN
    assert result.value == (
        "in use on 127.0.0.1 by a service that requires authentication "
        "(HTTP 401 at /healthz), so it cannot be confirmed as Qdrant"
    )


def test_silent_listener_is_conflict() -> None:
    with tcp_listener() as port:
        result = check_port(SERVICES["QDRANT_PORT"], port, SETTINGS)

    assert result.status is CheckStatus.FAIL
    assert "(no HTTP response at /healthz)" in result.value
    assert f"pid {os.getpid()}" in result.value


def test_application_port_held_by_other_program() -> None:
    with tcp_listener() as port:
        result = check_port(SERVICES["HTTP_SERVER_PORT"], port, SETTINGS)

    assert result.status is CheckStatus.FAIL
    assert "which is another program" in result.value
    assert result.action == "stop that process, or set HTTP_SERVER_PORT to a free port"


LISTEN_SCRIPT = """
import socket, sys, time
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
print(sock.getsockname()[1], flush=True)
time.sleep(60)
"""


def test_application_port_held_by_application(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", LISTEN_SCRIPT],
        cwd=app,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(child.stdout.readline())
        settings = PortProbeSettings(0.2, 0.5, app_folders=(app,))

        result = check_port(SERVICES["HTTP_SERVER_PORT"], port, settings)
    finally:
        child.kill()
        child.wait()

    assert result.status is CheckStatus.OK
    assert "by CodeMate itself: python" in result.value
    assert f"(pid {child.pid})" in result.value


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_only_listener_is_found() -> None:
    with http_server(qdrant, address="::1") as port:
        result = check_port(SERVICES["QDRANT_PORT"], port, SETTINGS)

    assert result.status is CheckStatus.OK
    assert result.value == "held by Qdrant on ::1"
    assert result.detail["addresses"]["127.0.0.1"] == "free"


def test_bind_state_of_busy_port() -> None:
    with tcp_listener() as port:
        assert bind_state("127.0.0.1", port) is BindState.IN_USE


def test_duplicate_port_settings_are_critical() -> None:
    result = check_assignments({"QDRANT_PORT": 45225, "OLLAMA_PORT": 45225})

    assert result is not None
    assert result.status is CheckStatus.FAIL
    assert result.value == "QDRANT_PORT and OLLAMA_PORT are all set to port 45225"


def test_check_ports_covers_every_service() -> None:
    ports = free_service_ports()

    results = check_ports(ports, SETTINGS)

    assert [r.check for r in results] == [f"port.{name}" for name in SERVICES]
    assert all(r.status is CheckStatus.OK for r in results)


def test_client_connection_port_is_warning() -> None:
    with tcp_listener() as server_port, socket.socket() as client:
        # A client socket bound to a port, the way the OS hands out ports for
        # outgoing connections: the port is taken, but nothing listens on it.
        client.bind(("127.0.0.1", 0))
        client.connect(("127.0.0.1", server_port))
        port = client.getsockname()[1]
        result = check_port(SERVICES["WEBSOCKET_SERVER_PORT"], port, SETTINGS)

    assert result.status is CheckStatus.WARN
    assert "no server listens there" in result.value
    assert result.action.startswith("run the verification again in a minute")

"""A loopback HTTP server whose responses a test scripts request by request.

The reference middleware covers the usual faults, and this server produces what
it cannot: a 200 in response to a ``Range`` request, a wrong ``Content-Range``, a
compressed body, a body without ``Content-Length``, redirects, TLS with a
self-signed certificate. Each test passes a function from a
:class:`ScriptedRequest` to a :class:`ScriptedResponse`.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass(frozen=True)
class ScriptedRequest:
    """One request as the server received it.

    Attributes:
        number: Position of the request among all requests, from 0.
        path: The request target, with its query.
        headers: Request headers with lower-case names.
    """

    number: int
    path: str
    headers: dict[str, str]


@dataclass
class ScriptedResponse:
    """What to send back.

    Attributes:
        status: The HTTP status.
        headers: Response headers; ``Content-Length`` is added for a bytes
            body unless ``length`` is False.
        body: The whole body, or chunks sent one after the other.
        length: Send ``Content-Length`` for a bytes body. Without it the body
            ends when the server closes the connection.
        close: Close the connection after the body.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""
    length: bool = True
    close: bool = False


Script = Callable[[ScriptedRequest], ScriptedResponse]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ScriptedHTTPServer

    def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
        request = self.server.register(self.path, self.headers.items())
        try:
            response = self.server.script(request)
            self._send(response)
        finally:
            self.server.unregister()

    def _send(self, response: ScriptedResponse) -> None:
        body = response.body
        whole = body if isinstance(body, bytes) else None
        close = response.close or (whole is not None and not response.length)
        close = close or whole is None

        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if whole is not None and response.length:
            self.send_header("Content-Length", str(len(whole)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()

        chunks = [whole] if whole is not None else body
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass
        if close:
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Stay quiet; tests read ``server.requests`` instead."""


class _ScriptedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[ScriptedRequest] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def register(
        self, path: str, headers: Iterable[tuple[str, str]]
    ) -> ScriptedRequest:
        with self._lock:
            request = ScriptedRequest(
                len(self.requests), path, {k.lower(): v for k, v in headers}
            )
            self.requests.append(request)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        return request

    def unregister(self) -> None:
        with self._lock:
            self.active -= 1


class ScriptedServer:
    """A running scripted server; stop it with :meth:`stop` or ``with``.

    Attributes:
        url: Base URL such as ``http://127.0.0.1:40000``.
        requests: Requests received so far, in arrival order.
    """

    def __init__(self, script: Script, *, tls_files: tuple[Path, Path] | None = None):
        self._server = _ScriptedHTTPServer(script)
        scheme = "http"
        if tls_files is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True
            )
            scheme = "https"
        port = self._server.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{port}"
        self.requests = self._server.requests
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()

    @property
    def max_active(self) -> int:
        """Most requests served at the same time so far."""
        return self._server.max_active

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def parse_range_start(header: str | None) -> int | None:
    """Return N from ``Range: bytes=N-``, or None without such a header."""
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return None
    return int(header[len("bytes=") : -1])

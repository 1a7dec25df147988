"""A loopback TCP server that hands each connection it accepts to a handler.

Tests use it to send bytes that no HTTP server library would send: heads cut
in the middle, heads a byte at a time, stray bytes between responses.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

# The handler gets the connection and its index among the accepted ones,
# from 0. The server closes the connection when the handler returns.
Handler = Callable[[socket.socket, int], None]


class ConnectionServer:
    """Accept connections on 127.0.0.1 and serve each in a thread of its own."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self._accepted: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/") -> str:
        """Return the URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        """Stop accepting, shut down open connections and wait for the handlers."""
        self._listener.close()
        for connection in list(self._accepted):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> ConnectionServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            self._accepted.append(connection)
            thread = threading.Thread(
                target=self._serve, args=(connection, index), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket, index: int) -> None:
        with connection:
            self.handler(connection, index)


def request_heads(connection: socket.socket) -> Iterator[str]:
    """Yield each request head that arrives on ``connection``, until it closes.

    A head is the text before its blank line, decoded as Latin-1. Request
    bodies are not expected, so bytes after a blank line start the next head.
    """
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = connection.recv(65536)
            if not chunk:
                return
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        yield head.decode("latin-1")

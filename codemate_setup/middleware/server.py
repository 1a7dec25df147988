"""The reference middleware server and its in-process handle."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import socketserver
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from codemate_setup.errors import UsageError
from codemate_setup.middleware.faults import FaultConfig, FaultState
from codemate_setup.middleware.handler import MiddlewareHandler
from codemate_setup.middleware.records import RequestRecord
from codemate_setup.middleware.releases import ReleaseStore

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

# Pending connections the kernel queues before they are accepted. Parallel
# downloads open many connections at once.
LISTEN_BACKLOG = 128

# How often serve_forever checks for a stop request, in seconds.
POLL_INTERVAL_SECONDS = 0.05

# Time allowed for the serving and handler threads to end after a stop request.
STOP_TIMEOUT_SECONDS = 10.0


class MiddlewareServer(ThreadingHTTPServer):
    """A threading HTTP server over a :class:`ReleaseStore`, with fault state."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        store: ReleaseStore,
        faults: FaultState,
    ) -> None:
        self.address_family = _address_family(address[0])
        self.store = store
        self.faults = faults
        self.requests: list[RequestRecord] = []
        self.stopping = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, MiddlewareHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can wait on
        # DNS. The URL needs only the address and the port.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def record(self, record: RequestRecord) -> None:
        """Append the record of one served request."""
        self.requests.append(record)

    def track_connection(self, connection: socket.socket) -> None:
        """Remember an open connection so that a stop can close it."""
        with self._connections_lock:
            self._connections[connection] = threading.current_thread()

    def untrack_connection(self, connection: socket.socket) -> None:
        """Forget a connection once its handler is done with it."""
        with self._connections_lock:
            self._connections.pop(connection, None)

    def close_connections(self, timeout: float) -> None:
        """Shut down every open connection and wait for its handler to end.

        Handler threads are daemons, so a process can exit without them. The
        wait lets each one finish its log line first.

        Args:
            timeout: Seconds to wait for all handlers together.
        """
        with self._connections_lock:
            connections = dict(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

        deadline = time.monotonic() + timeout
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))


class MiddlewareHandle:
    """A middleware running in a background thread; also a context manager.

    Attributes:
        url: Base URL, such as ``http://127.0.0.1:41234``.
        host: The address the server listens on.
        port: The port the server listens on.
        requests: Records of the requests served so far, in completion order.
    """

    def __init__(self, server: MiddlewareServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host = server.server_name
        self.port = server.server_port
        self.url = f"http://{_url_host(self.host)}:{self.port}"
        self.requests = server.requests

    @property
    def faults(self) -> FaultConfig:
        """The faults in force."""
        return self._server.faults.config

    def set_faults(self, faults: FaultConfig | None) -> None:
        """Put new faults in force for the following requests.

        The counts behind ``error_count`` and ``fault_count`` restart at zero.
        """
        self._server.faults.replace(faults)

    def stop(self) -> None:
        """Stop serving, close open connections and wait for the thread.

        Calling it again does nothing.
        """
        if self._server.stopping.is_set():
            return

        self._server.stopping.set()
        self._server.shutdown()
        self._server.close_connections(STOP_TIMEOUT_SECONDS)
        self._server.server_close()
        self._thread.join(STOP_TIMEOUT_SECONDS)
        logger.info("middleware at %s stopped", self.url)

    def __enter__(self) -> MiddlewareHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_middleware(
    releases_dir: str | Path,
    host: str = DEFAULT_HOST,
    port: int = 0,
    legacy: bool = False,
    faults: FaultConfig | None = None,
) -> MiddlewareHandle:
    """Start the reference middleware in a background thread.

    Args:
        releases_dir: Folder of releases written by ``codemate_setup.publish``.
        host: Address to listen on, loopback by default.
        port: Port to listen on, where 0 picks a free one (see ``handle.url``).
        legacy: Serve manifests as the existing middleware does: incremental
            lists of plain paths, no ``files`` listing, no hashes.
        faults: Faults to inject; none by default.

    Returns:
        The handle, whose ``stop()`` ends the server.

    Raises:
        UsageError: If the releases folder does not exist or the address
            cannot be bound.
    """
    root = Path(releases_dir)
    if not root.is_dir():
        raise UsageError(
            f"releases folder {str(root)!r} not found; publish a release there "
            f"with 'python -m codemate_setup.publish' first"
        )

    if not _is_loopback(host):
        logger.warning("serving on %s, which is not a loopback address", host)

    store = ReleaseStore(root, legacy=legacy)
    try:
        server = MiddlewareServer((host, port), store, FaultState(faults))
    except OSError as e:
        raise UsageError(
            f"cannot listen on {host} port {port}: {e.strerror or e}; "
            "choose another port with --port (0 picks a free one) or another --host"
        ) from e

    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": POLL_INTERVAL_SECONDS},
        name=f"middleware-{server.server_port}",
        daemon=True,
    )
    thread.start()

    handle = MiddlewareHandle(server, thread)
    logger.info(
        "middleware serving %s at %s%s",
        root,
        handle.url,
        " (legacy manifests)" if legacy else "",
    )
    return handle


def _address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

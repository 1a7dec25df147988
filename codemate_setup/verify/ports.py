"""Service ports: free, held by the expected service, or a conflict with its owner."""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from codemate_setup.verify.model import CheckResult, CheckStatus

logger = logging.getLogger(__name__)

# The application binds its services on IPv4 and IPv6 loopback.
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")
# Bytes of an HTTP response read for identification.
MAX_RESPONSE_BYTES = 64 * 1024
# Body of Qdrant's /healthz response (Qdrant 1.x).
QDRANT_HEALTHZ_TEXT = "healthz check passed"


class BindState(str, Enum):
    """Result of a test bind of one address and port."""

    FREE = "free"
    IN_USE = "in use"
    UNAVAILABLE = "address unavailable"


@dataclass(frozen=True)
class ProbeResponse:
    """Status and the start of the body of one HTTP response."""

    status: int
    body: bytes


Identify = Callable[[ProbeResponse], "str | None"]


@dataclass(frozen=True)
class ServiceSpec:
    """A service the application expects on a port.

    Attributes:
        variable: The environment variable that sets the port.
        name: The service's name in messages.
        probe_path: Path that identifies the service over HTTP; None for the
            application's own servers, which are not running during setup.
        identify: Returns a description when the response at ``probe_path``
            comes from the service, else None.
    """

    variable: str
    name: str
    probe_path: str | None = None
    identify: Identify | None = None


def identify_qdrant(response: ProbeResponse) -> str | None:
    """Recognize Qdrant's ``/healthz`` response."""
    text = response.body.decode("utf-8", "replace")
    if response.status == 200 and QDRANT_HEALTHZ_TEXT in text:
        return "Qdrant"
    return None


def identify_ollama(response: ProbeResponse) -> str | None:
    """Recognize Ollama's ``/api/version`` response, ``{"version": "0.1.32"}``."""
    if response.status != 200:
        return None
    try:
        document = json.loads(response.body)
    except ValueError:
        return None
    version = document.get("version") if isinstance(document, dict) else None
    return f"Ollama {version}" if isinstance(version, str) and version else None


SERVICES = {
    "HTTP_SERVER_PORT": ServiceSpec("HTTP_SERVER_PORT", "CodeMate HTTP server"),
    "WEBSOCKET_SERVER_PORT": ServiceSpec(
        "WEBSOCKET_SERVER_PORT", "CodeMate WebSocket server"
    ),
    "QDRANT_PORT": ServiceSpec("QDRANT_PORT", "Qdrant", "/healthz", identify_qdrant),
    "OLLAMA_PORT": ServiceSpec(
        "OLLAMA_PORT", "Ollama", "/api/version", identify_ollama
    ),
}


@dataclass(frozen=True)
class PortOwner:
    """A process holding a port, as far as the OS reveals it."""

    pid: int | None
    name: str | None
    cmdline: tuple[str, ...] = ()
    cwd: str | None = None
    note: str | None = None

    def describe(self) -> str:
        """Return ``name (pid N)``, or why the owner is unknown."""
        if self.pid is None:
            return f"an unknown process ({self.note or 'the OS did not name it'})"
        return f"{self.name or 'process'} (pid {self.pid})"


def bind_state(address: str, port: int) -> BindState:
    """Try to bind ``address:port`` the way a server would, then release it.

    On POSIX, ``SO_REUSEADDR`` lets a port whose last connections linger in
    TIME_WAIT count as free, as it does for a real server. On Windows that
    option would allow taking over a live port, so ``SO_EXCLUSIVEADDRUSE``
    is used instead.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return BindState.UNAVAILABLE

    with sock:
        # NOTE: the Windows branch has not run in this project's tests.
        if os.name == "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((address, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return BindState.IN_USE
            logger.debug("cannot bind %s port %d: %s", address, port, e)
            return BindState.UNAVAILABLE
    return BindState.FREE


def http_get(
    address: str, port: int, path: str, connect_timeout: float, read_timeout: float
) -> ProbeResponse | None:
    """Send one GET and return the response; None when no HTTP response came."""
    # Imported here: it loads ssl, and only a port in use needs it.
    import http.client

    connection = http.client.HTTPConnection(address, port, timeout=connect_timeout)
    try:
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(read_timeout)
        connection.request(
            "GET", path, headers={"Connection": "close", "User-Agent": "codemate-setup"}
        )
        response = connection.getresponse()
        body = response.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException) as e:
        logger.debug("no HTTP response from %s port %d%s: %s", address, port, path, e)
        return None
    finally:
        connection.close()

    logger.debug(
        "%s port %d%s responded with HTTP %d", address, port, path, response.status
    )
    return ProbeResponse(response.status, body)


def accepts_connections(address: str, port: int, timeout: float) -> bool:
    """Tell whether something accepts TCP connections at ``address:port``."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect((address, port))
    except OSError:
        return False
    return True


def find_port_owners(port: int) -> list[PortOwner]:
    """Name the processes that hold ``port``, where the OS allows it.

    Listing other processes' sockets may need administrator rights (macOS,
    and other users' processes on Linux); the owner is then unknown.
    """
    import psutil  # imported here: only a port conflict needs it

    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, PermissionError) as e:
        logger.debug("cannot list sockets: %s", e)
        return [
            PortOwner(None, None, note="listing sockets needs administrator rights")
        ]

    pids = []
    for connection in connections:
        local = connection.laddr
        holds = connection.status in (psutil.CONN_LISTEN, psutil.CONN_NONE)
        if local and local.port == port and holds and connection.pid not in pids:
            pids.append(connection.pid)

    return [_describe_process(pid) for pid in pids]


def _describe_process(pid: int | None) -> PortOwner:
    import psutil

    if pid is None:
        return PortOwner(None, None, note="the OS hides its process id")
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            name = process.name()
            cmdline = tuple(process.cmdline())
            cwd = process.cwd()
    except psutil.NoSuchProcess:
        return PortOwner(pid, None, note="it has exited")
    except psutil.AccessDenied:
        return PortOwner(pid, None, note="access denied")
    return PortOwner(pid, name, cmdline, cwd)


def is_application_process(owner: PortOwner, app_folders: tuple[Path, ...]) -> bool:
    """Tell whether a process runs from the application's folders."""
    candidates = [*owner.cmdline[:2]]
    if owner.cwd:
        candidates.append(owner.cwd)
    for text in candidates:
        path = Path(text)
        for folder in app_folders:
            if path == folder or folder in path.parents:
                return True
    return False


def check_assignments(ports: Mapping[str, int]) -> CheckResult | None:
    """Report two services configured on the same port; None when all differ."""
    by_port: dict[int, list[str]] = {}
    for variable, port in ports.items():
        by_port.setdefault(port, []).append(variable)

    clashes = {port: names for port, names in by_port.items() if len(names) > 1}
    if not clashes:
        return None

    port, names = next(iter(clashes.items()))
    return CheckResult(
        "ports.assignment",
        "port settings",
        CheckStatus.FAIL,
        f"{' and '.join(names)} are all set to port {port}",
        f"give each service its own port, e.g. by changing {names[-1]}",
        {"clashes": {str(p): n for p, n in clashes.items()}},
    )


@dataclass(frozen=True)
class PortProbeSettings:
    """Timeouts and context of the port checks."""

    connect_timeout: float
    read_timeout: float
    app_folders: tuple[Path, ...] = ()
    addresses: tuple[str, ...] = LOOPBACK_ADDRESSES


def check_port(
    spec: ServiceSpec, port: int, settings: PortProbeSettings
) -> CheckResult:
    """Check one service port on every loopback address."""
    check_id = f"port.{spec.variable}"
    title = f"{spec.name} port {port}"
    states = {address: bind_state(address, port) for address in settings.addresses}
    logger.debug("port %d bind states: %s", port, states)

    busy = [a for a, state in states.items() if state is BindState.IN_USE]
    usable = [a for a, state in states.items() if state is BindState.FREE]
    detail: dict[str, object] = {
        "port": port,
        "variable": spec.variable,
        "addresses": {a: s.value for a, s in states.items()},
    }

    if not busy:
        where = " and ".join(usable) or "no loopback address"
        return CheckResult(
            check_id, title, CheckStatus.OK, f"free on {where}", None, detail
        )

    return _check_busy_port(spec, port, busy, settings, check_id, title, detail)


def _check_busy_port(
    spec: ServiceSpec,
    port: int,
    busy: list[str],
    settings: PortProbeSettings,
    check_id: str,
    title: str,
    detail: dict[str, object],
) -> CheckResult:
    where = " and ".join(busy)
    probe_note = None

    if spec.probe_path is not None and spec.identify is not None:
        identification = _identify_service(spec, busy[0], port, settings)
        probe_note = identification.note
        detail["probe"] = probe_note
        if identification.status is not None:
            return CheckResult(
                check_id,
                title,
                identification.status,
                identification.value.format(where=where),
                identification.action,
                detail,
            )

    owners = find_port_owners(port)
    detail["owners"] = [{"pid": o.pid, "name": o.name, "note": o.note} for o in owners]
    owner_text = ", ".join(o.describe() for o in owners) or "an unknown process"
    if any(is_application_process(o, settings.app_folders) for o in owners):
        return CheckResult(
            check_id,
            title,
            CheckStatus.OK,
            f"in use on {where} by CodeMate itself: {owner_text}",
            None,
            detail,
        )

    listening = [
        address
        for address in busy
        if accepts_connections(address, port, settings.connect_timeout)
    ]
    if not listening:
        # The local end of an outgoing or closing connection, not a server.
        # Ports from 32768 up are handed out for such connections on Linux.
        return CheckResult(
            check_id,
            title,
            CheckStatus.WARN,
            f"taken on {where} by a connection of {owner_text}, but no server "
            "listens there; the OS usually releases such a port within a minute",
            f"run the verification again in a minute; if this persists, set "
            f"{spec.variable} to a free port",
            detail,
        )

    what = f"not {spec.name}" if spec.probe_path else "another program"
    reason = f" ({probe_note})" if probe_note else ""
    return CheckResult(
        check_id,
        title,
        CheckStatus.FAIL,
        f"in use on {where} by {owner_text}, which is {what}{reason}",
        f"stop that process, or set {spec.variable} to a free port",
        detail,
    )


@dataclass(frozen=True)
class _Identification:
    """Outcome of asking a port's holder whether it is the expected service.

    Attributes:
        status: OK or WARN when the holder may stay; None for a conflict.
        value: The report value, with ``{where}`` for the addresses.
        note: What the probe found, for the report's detail.
        action: The next action for a WARN.
    """

    status: CheckStatus | None
    value: str
    note: str
    action: str | None = None


def _conflict(note: str) -> _Identification:
    return _Identification(None, "", note)


def _identify_service(
    spec: ServiceSpec, address: str, port: int, settings: PortProbeSettings
) -> _Identification:
    assert spec.probe_path is not None and spec.identify is not None
    timeouts = (settings.connect_timeout, settings.read_timeout)
    response = http_get(address, port, spec.probe_path, *timeouts)
    if response is None:
        if not accepts_connections(address, port, settings.connect_timeout):
            return _conflict("bound but not accepting connections")
        return _conflict(f"no HTTP response at {spec.probe_path}")

    if response.status in (401, 403):
        return _Identification(
            CheckStatus.WARN,
            f"in use on {{where}} by a service that requires authentication "
            f"(HTTP {response.status} at {spec.probe_path}), so it cannot be "
            f"confirmed as {spec.name}",
            f"HTTP {response.status}",
            f"nothing to do if it is {spec.name} with an API key; otherwise stop it "
            f"or set {spec.variable} to a free port",
        )

    found = spec.identify(response)
    if found is None:
        return _conflict(f"HTTP {response.status} at {spec.probe_path}")

    # A server that responds 200 to every path would pass any probe, and an
    # unguessable path distinguishes it from the real service.
    decoy = f"/codemate-probe-{secrets.token_hex(8)}"
    decoy_response = http_get(address, port, decoy, *timeouts)
    if decoy_response is not None and decoy_response.status == 200:
        return _conflict(f"it responds with HTTP 200 to any path, such as {decoy}")

    return _Identification(
        CheckStatus.OK, f"held by {found} on {{where}}", "identified"
    )


def check_ports(
    ports: Mapping[str, int], settings: PortProbeSettings
) -> list[CheckResult]:
    """Check every configured service port, and that no two share a port."""
    results = []
    clash = check_assignments(ports)
    if clash is not None:
        results.append(clash)

    for variable, port in ports.items():
        spec = SERVICES.get(variable, ServiceSpec(variable, variable))
        results.append(check_port(spec, port, settings))
    return results

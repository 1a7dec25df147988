"""Fault injection for the reference middleware, off unless configured.

Two kinds of fault exist. An error fault returns ``error_status`` instead of
the real response to the first ``error_count`` matching requests. Body
faults change how a download body is sent: cut short, corrupted, declared with
a wrong ``Content-Length``, throttled or stalled.

Without ``path_glob`` every request matches the error fault and every download
matches the body faults. With ``path_glob`` only downloads whose release path
matches the glob (``fnmatch`` rules, where ``*`` also matches ``/``) match
either kind.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Inverts every bit, so a corrupted body keeps its length but no byte is right.
_INVERT_TABLE = bytes(b ^ 0xFF for b in range(256))


@dataclass(frozen=True)
class FaultConfig:
    """Faults to inject. The default instance injects none.

    Attributes:
        drop_after_bytes: Close the connection after sending this many body
            bytes of a download, although the headers declare the full length.
        error_status: Status (such as 500, 503 or 429) returned instead of the
            real response for the first ``error_count`` matching requests.
        error_count: How many matching requests get ``error_status``.
        retry_after: Seconds sent in a ``Retry-After`` header with the error
            status. Fractional values are sent as decimals, which real servers
            never do, so tests can retry quickly.
        corrupt_bytes: Send every body byte inverted, keeping the length.
        wrong_length: Declare ``Content-Length`` as the real length plus this
            delta (negative for less). The server sends at most the declared
            length and then closes the connection.
        bytes_per_second: Throttle download bodies to this rate.
        stall_after_bytes: Stop sending for ``stall_seconds`` after this many
            body bytes, keeping the connection open, then go on.
        stall_seconds: Length of the stall, in seconds.
        fault_count: Apply the body faults only to the first this-many matching
            downloads; None applies them to all.
        path_glob: Restrict both kinds of fault to downloads whose release path
            matches this glob, such as ``"*.bin"`` or ``"pkg/*"``.
    """

    drop_after_bytes: int | None = None
    error_status: int | None = None
    error_count: int = 1
    retry_after: float | None = None
    corrupt_bytes: bool = False
    wrong_length: int | None = None
    bytes_per_second: int | None = None
    stall_after_bytes: int | None = None
    stall_seconds: float = 0.0
    fault_count: int | None = None
    path_glob: str | None = None

    def __post_init__(self) -> None:
        _check_at_least("drop_after_bytes", self.drop_after_bytes, 0)
        _check_at_least("error_count", self.error_count, 0)
        _check_at_least("bytes_per_second", self.bytes_per_second, 1)
        _check_at_least("stall_after_bytes", self.stall_after_bytes, 0)
        _check_at_least("fault_count", self.fault_count, 0)
        if self.error_status is not None and not 400 <= self.error_status <= 599:
            raise ValueError(
                f"error_status must be an HTTP error status from 400 to 599, "
                f"got {self.error_status}"
            )
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {self.retry_after}")
        if self.stall_seconds < 0:
            raise ValueError(f"stall_seconds must be >= 0, got {self.stall_seconds}")

    @property
    def has_body_faults(self) -> bool:
        """Whether any fault changes how a download body is sent."""
        return (
            self.drop_after_bytes is not None
            or self.corrupt_bytes
            or self.wrong_length is not None
            or self.bytes_per_second is not None
            or self.stall_after_bytes is not None
        )


def _check_at_least(name: str, value: int | None, minimum: int) -> None:
    if value is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class ErrorFault:
    """An injected error response."""

    status: int
    retry_after: float | None


@dataclass(frozen=True)
class BodyPlan:
    """How to send one download body, derived from the faults in force.

    Attributes:
        declared_length: Value of the ``Content-Length`` header.
        send_bytes: Body bytes actually sent, at most the real length.
        close_after: Close the connection after the body, because the
            sent, declared and real lengths are not all equal.
        corrupt: Invert every byte sent.
        bytes_per_second: Throttle rate, or None.
        stall_at: Body offset at which sending pauses, or None.
        stall_seconds: Length of that pause.
    """

    declared_length: int
    send_bytes: int
    close_after: bool = False
    corrupt: bool = False
    bytes_per_second: int | None = None
    stall_at: int | None = None
    stall_seconds: float = 0.0


def plan_body(faults: FaultConfig | None, length: int) -> BodyPlan:
    """Work out the declared length and the bytes to send for one body.

    Args:
        faults: The body faults that apply to this response, or None.
        length: Real length of the body (the file or the requested range).

    Returns:
        The plan; without faults it declares and sends ``length`` bytes.
    """
    if faults is None:
        return BodyPlan(declared_length=length, send_bytes=length)

    declared = length
    if faults.wrong_length is not None:
        declared = max(0, length + faults.wrong_length)

    send = min(length, declared)
    if faults.drop_after_bytes is not None:
        send = min(send, faults.drop_after_bytes)

    stall_at = faults.stall_after_bytes
    if stall_at is not None and stall_at >= send:
        stall_at = None

    return BodyPlan(
        declared_length=declared,
        send_bytes=send,
        close_after=send != declared or declared != length,
        corrupt=faults.corrupt_bytes,
        bytes_per_second=faults.bytes_per_second,
        stall_at=stall_at,
        stall_seconds=faults.stall_seconds,
    )


def corrupt(chunk: bytes) -> bytes:
    """Return ``chunk`` with every bit inverted."""
    return chunk.translate(_INVERT_TABLE)


class FaultState:
    """The faults in force and how many requests each has affected so far.

    Thread-safe, because every request thread calls it to learn which faults
    apply.
    """

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config or FaultConfig()
        self._errors_sent = 0
        self._bodies_faulted = 0

    @property
    def config(self) -> FaultConfig:
        """The faults in force."""
        return self._config

    def replace(self, config: FaultConfig | None) -> None:
        """Put new faults in force and restart their counts from zero."""
        with self._lock:
            self._config = config or FaultConfig()
            self._errors_sent = 0
            self._bodies_faulted = 0
        logger.info("faults set to %s", self._config)

    def take_error(self, release_path: str | None) -> ErrorFault | None:
        """Decide whether this request gets an injected error, and count it.

        Args:
            release_path: The release path for a download, None for any other
                request.

        Returns:
            The error to send, or None to serve the request normally.
        """
        with self._lock:
            config = self._config
            if config.error_status is None or self._errors_sent >= config.error_count:
                return None
            if not _matches(config.path_glob, release_path):
                return None
            self._errors_sent += 1

        logger.debug(
            "injecting status %d (%d of %d)",
            config.error_status,
            self._errors_sent,
            config.error_count,
        )
        return ErrorFault(config.error_status, config.retry_after)

    def take_body_faults(self, release_path: str) -> FaultConfig | None:
        """Decide whether this download body gets the body faults, and count it.

        Returns:
            The configuration whose body faults apply, or None.
        """
        with self._lock:
            config = self._config
            if not config.has_body_faults:
                return None
            if not _matches(config.path_glob, release_path, downloads_only=True):
                return None
            limit = config.fault_count
            if limit is not None and self._bodies_faulted >= limit:
                return None
            self._bodies_faulted += 1

        logger.debug("injecting body faults into %r", release_path)
        return config


def _matches(
    glob: str | None, release_path: str | None, *, downloads_only: bool = False
) -> bool:
    if release_path is None:
        return glob is None and not downloads_only
    if glob is None:
        return True
    return fnmatch.fnmatchcase(release_path, glob)

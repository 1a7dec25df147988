"""A deadline on the response heads of the ``requests`` path, and a way to cut them.

The read timeout bounds each socket read only, so a server that sends the
response head a byte at a time keeps ``Session.send`` waiting without limit.
A thread waiting for a head also has no response yet that a cancel could shut
down. :class:`HeadWatchAdapter` installs connection classes that register
their socket with :data:`HEAD_WATCH` from the moment the request is sent until
the head is parsed. One timer thread shuts down each socket whose head is
still incomplete one window of the floor on download speed
(``Limits.low_speed_seconds``) after its request, and the request then raises
:class:`~codemate_setup.download_stall.HeadStalled`. A caller that runs
requests inside :func:`interruptible` can wake the ones waiting for a head
with :func:`interrupt_heads`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from codemate_setup.download_stall import HeadStalled, head_stall_reason

logger = logging.getLogger(__name__)

# Settings of the requests that the current thread sends. ``deadline`` is a
# (seconds, stall reason) pair set by HeadWatchAdapter.send, and ``stop`` is
# the event set by interruptible().
_scope = threading.local()

_STALLED = "stalled"
_INTERRUPTED = "interrupted"


class _Waiter:
    """One request waiting for its response head."""

    __slots__ = ("sock", "deadline", "reason", "stop", "fired")

    def __init__(
        self,
        sock: socket.socket,
        deadline: float | None,
        reason: str,
        stop: threading.Event | None,
    ) -> None:
        self.sock = sock
        self.deadline = deadline
        self.reason = reason
        self.stop = stop
        self.fired: str | None = None


class HeadWatch:
    """The sockets of requests waiting for a response head, and their timer thread.

    The timer thread starts with the first deadline and ends when it wakes
    with no deadline left, so an idle process has no thread for it. Sockets
    are shut down only while the lock is held, and a request unregisters under
    the same lock before its connection returns to the pool, so a late timer
    never shuts down a connection that serves another request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: set[_Waiter] = set()
        self._timer_running = False
        # When the timer thread wakes next, so that only an earlier deadline
        # needs to wake it sooner.
        self._wake_at = 0.0

    def register(
        self,
        sock: socket.socket,
        window: float | None,
        reason: str,
        stop: threading.Event | None,
    ) -> _Waiter:
        """Watch ``sock`` until :meth:`unregister`, for at most ``window`` seconds."""
        deadline = None if window is None else time.monotonic() + window
        waiter = _Waiter(sock, deadline, reason, stop)
        with self._lock:
            self._waiting.add(waiter)
            if stop is not None and stop.is_set():
                self._fire(waiter, _INTERRUPTED)
            elif deadline is not None:
                self._schedule(deadline)
        return waiter

    def unregister(self, waiter: _Waiter) -> str | None:
        """Stop watching; return why the socket was shut down, or None."""
        with self._lock:
            self._waiting.discard(waiter)
            if self._timer_running and not self._waiting:
                # The timer thread would otherwise sleep until a deadline
                # that no request waits for any more, up to a whole window.
                self._wake.notify()
        return waiter.fired

    def interrupt(self, stop: threading.Event) -> None:
        """Shut down the sockets of the requests registered with ``stop``."""
        with self._lock:
            for waiter in [w for w in self._waiting if w.stop is stop]:
                self._fire(waiter, _INTERRUPTED)

    def _schedule(self, deadline: float) -> None:
        if not self._timer_running:
            self._timer_running = True
            self._wake_at = deadline
            thread = threading.Thread(
                target=self._run_timer, name="response-head-timer", daemon=True
            )
            thread.start()
        elif deadline < self._wake_at:
            self._wake_at = deadline
            self._wake.notify()

    def _run_timer(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                deadlines = []
                for waiter in list(self._waiting):
                    if waiter.deadline is None:
                        continue
                    if waiter.deadline <= now:
                        self._fire(waiter, _STALLED)
                    else:
                        deadlines.append(waiter.deadline)
                if not deadlines:
                    self._timer_running = False
                    return
                self._wake_at = min(deadlines)
                self._wake.wait(self._wake_at - now)

    def _fire(self, waiter: _Waiter, outcome: str) -> None:
        """Shut down the socket of ``waiter``; the caller holds the lock."""
        self._waiting.discard(waiter)
        waiter.fired = outcome
        if outcome == _STALLED:
            logger.debug("shutting down a connection: %s", waiter.reason)
        with contextlib.suppress(OSError):
            waiter.sock.shutdown(socket.SHUT_RDWR)


HEAD_WATCH = HeadWatch()


@contextlib.contextmanager
def interruptible(stop: threading.Event) -> Iterator[None]:
    """Let :func:`interrupt_heads` wake this thread's requests waiting for a head.

    A request that starts after ``stop`` is set is shut down as soon as it
    waits for its head.
    """
    previous = getattr(_scope, "stop", None)
    _scope.stop = stop
    try:
        yield
    finally:
        _scope.stop = previous


def interrupt_heads(stop: threading.Event) -> None:
    """Wake the requests sent inside ``interruptible(stop)`` that wait for a head.

    Set ``stop`` first, so that a request sent meanwhile is stopped too.
    Each one fails with the connection error of a closed connection.
    """
    HEAD_WATCH.interrupt(stop)


class _WatchedConnectionMixin:
    """Register the socket with :data:`HEAD_WATCH` while the head is read."""

    sock: socket.socket | None

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        deadline = getattr(_scope, "deadline", None)
        stop = getattr(_scope, "stop", None)
        sock = self.sock
        if sock is None or (deadline is None and stop is None):
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]

        window, reason = deadline if deadline is not None else (None, "")
        waiter = HEAD_WATCH.register(sock, window, reason, stop)
        try:
            response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        except BaseException as e:
            if HEAD_WATCH.unregister(waiter) == _STALLED:
                raise HeadStalled(reason) from e
            raise
        if HEAD_WATCH.unregister(waiter) == _STALLED:
            # The head arrived as the timer fired: the socket is shut down.
            raise HeadStalled(reason)
        return response


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOL_CLASSES = {
    "http": _WatchedHTTPConnectionPool,
    "https": _WatchedHTTPSConnectionPool,
}


class HeadWatchAdapter(HTTPAdapter):
    """An HTTP adapter whose requests fail once their head is one window late.

    Args:
        low_speed_bytes: ``Limits.low_speed_bytes``. The deadline is off when
            it or ``low_speed_seconds`` is 0.
        low_speed_seconds: ``Limits.low_speed_seconds``, the deadline of a head
            counted from the moment its request was sent.
        **kwargs: The arguments of :class:`requests.adapters.HTTPAdapter`.
    """

    def __init__(
        self, *, low_speed_bytes: int, low_speed_seconds: float, **kwargs: Any
    ) -> None:
        self.head_deadline = None
        if low_speed_bytes > 0 and low_speed_seconds > 0:
            reason = head_stall_reason(low_speed_bytes, low_speed_seconds)
            self.head_deadline = (low_speed_seconds, reason)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # A SOCKS proxy manager has pool classes of its own, left unwatched.
        if isinstance(manager, urllib3.ProxyManager):
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        previous = getattr(_scope, "deadline", None)
        _scope.deadline = self.head_deadline
        try:
            return super().send(request, *args, **kwargs)
        finally:
            _scope.deadline = previous

"""HTTP request handler of the reference middleware.

Every response carries a ``Content-Length`` and no ``Content-Encoding``, so
HTTP/1.1 keep-alive works and clients see the stored bytes. Errors are JSON
objects ``{"status": 404, "error": "..."}``.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, BinaryIO

from codemate_setup.middleware.faults import BodyPlan, ErrorFault, corrupt, plan_body
from codemate_setup.middleware.records import RequestRecord
from codemate_setup.middleware.releases import JsonBody, encode_body
from codemate_setup.middleware.routing import (
    ByteRange,
    HttpError,
    RangeNotSatisfiable,
    Route,
    etag_in,
    if_range_allows,
    parse_range,
    parse_target,
    split_target,
)

if TYPE_CHECKING:
    from codemate_setup.middleware.server import MiddlewareServer

logger = logging.getLogger(__name__)

# Idle keep-alive connections and clients that stop reading are dropped after
# this many seconds.
CONNECTION_TIMEOUT_SECONDS = 60.0

# Body bytes handed to one sendfile call. Between calls the handler checks
# whether the server is stopping.
SENDFILE_CHUNK_BYTES = 8 * 1024 * 1024

# Read size when a body fault forces a copy through Python.
COPY_CHUNK_BYTES = 1024 * 1024

# Throttled bodies are sent in slices of about this fraction of a second.
THROTTLE_SLICE_SECONDS = 0.05


class MiddlewareHandler(BaseHTTPRequestHandler):
    """Serve one connection: health, releases, codebase, manifest, download."""

    protocol_version = "HTTP/1.1"
    server_version = "CodeMateMiddleware/1.0"
    timeout = CONNECTION_TIMEOUT_SECONDS
    server: MiddlewareServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track_connection(self.connection)
        self._entry: RequestRecord | None = None

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack_connection(self.connection)

    def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
        self._serve(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802 - name fixed by http.server
        self._serve(send_body=False)

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "connection":
            self._connection_header_sent = True
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        # Announce every close decided before the headers go out, so the
        # client does not try to reuse the connection.
        if self.close_connection and not self._connection_header_sent:
            self.send_header("Connection", "close")
        super().end_headers()

    def send_response(self, code: int, message: str | None = None) -> None:
        if self._entry is not None:
            self._entry.status = int(code)
        super().send_response(code, message)

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ) -> None:
        """Send a JSON error; http.server calls this for malformed requests."""
        self._start_record()
        self.close_connection = True
        status = HTTPStatus(code)
        self._send_json(
            status,
            _error_document(status, message or status.phrase),
            send_body=getattr(self, "command", None) != "HEAD",
        )
        self._log_request()

    def date_time_string(self, timestamp: float | None = None) -> str:
        """Format the ``Date`` header, formatting each second only once."""
        return _http_date(int(time.time() if timestamp is None else timestamp))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Do nothing: one line per request is logged once the body is sent."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("%s: %s", self.address_string(), format % args)

    def _start_record(self) -> None:
        # The record is listed before the response goes out, and body bytes
        # are counted before each write, so a client that has received the
        # whole response finds its record complete.
        self._connection_header_sent = False
        headers = getattr(self, "headers", None)
        raw_path, query = split_target(getattr(self, "path", "") or "")
        self._entry = RequestRecord(
            method=getattr(self, "command", None) or "",
            path=raw_path,
            status=0,
            bytes_sent=0,
            range_header=headers.get("Range") if headers is not None else None,
            query=query,
        )
        self.server.record(self._entry)

    def _count_sent(self, count: int) -> None:
        if self._entry is not None:
            self._entry.bytes_sent += count

    def _serve(self, *, send_body: bool) -> None:
        self._start_record()
        if _has_request_body(self.headers):
            # The body is never read, so it would corrupt the next request.
            self.close_connection = True

        try:
            self._dispatch(send_body)
        except HttpError as e:
            self._send_json(
                e.status,
                _error_document(e.status, e.message),
                send_body=send_body,
                headers=e.headers,
            )
        except OSError as e:
            # The client went away or stopped reading, so nothing more can be sent.
            self.close_connection = True
            logger.info("connection to %s failed: %s", self.address_string(), e)
        finally:
            self._log_request()

    def _dispatch(self, send_body: bool) -> None:
        route = parse_target(self.path)

        injected = self.server.faults.take_error(route.release_path)
        if injected is not None:
            self._send_injected_error(injected, send_body)
            return

        if route.endpoint == "download":
            self._send_download(route, send_body)
            return

        self._send_body(HTTPStatus.OK, self._document(route), send_body=send_body)

    def _document(self, route: Route) -> JsonBody:
        store = self.server.store
        if route.endpoint == "health":
            return encode_body(store.health())
        if route.endpoint == "releases":
            return encode_body(store.list_releases())
        if route.endpoint == "codebase":
            return store.release_info_body(route.version)
        return store.manifest_body(route.version)

    def _send_injected_error(self, injected: ErrorFault, send_body: bool) -> None:
        extra = {}
        if injected.retry_after is not None:
            extra["Retry-After"] = f"{injected.retry_after:g}"
        status = HTTPStatus(injected.status)
        document = _error_document(status, f"injected fault: {status.phrase}")
        self._send_json(status, document, send_body=send_body, headers=extra)

    def _send_json(
        self,
        status: HTTPStatus,
        document: Any,
        *,
        send_body: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send_body(
            status, encode_body(document), send_body=send_body, headers=headers
        )

    def _send_body(
        self,
        status: HTTPStatus,
        encoded: JsonBody,
        *,
        send_body: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = encoded.data
        etag = encoded.etag
        is_success = status == HTTPStatus.OK

        if is_success and etag_in(self.headers.get("If-None-Match"), etag):
            self._send_not_modified(etag)
            return

        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        if is_success:
            self.send_header("ETag", etag)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

        if send_body:
            self._write(body)

    def _send_not_modified(self, etag: str) -> None:
        self.send_response(HTTPStatus.NOT_MODIFIED)
        self.send_header("ETag", etag)
        self.end_headers()

    def _send_download(self, route: Route, send_body: bool) -> None:
        opened = self.server.store.open_file(route.version, route.release_path)
        with opened.file:
            if etag_in(self.headers.get("If-None-Match"), opened.etag):
                self._send_not_modified(opened.etag)
                return

            byte_range = self._requested_range(opened.size, opened.etag)
            start = byte_range.start if byte_range else 0
            length = byte_range.length if byte_range else opened.size

            faults = None
            if send_body:
                faults = self.server.faults.take_body_faults(route.release_path)
            plan = plan_body(faults, length)

            self._send_download_headers(opened, byte_range, plan)
            if not send_body:
                return
            if faults is None:
                self._send_file(opened.file, start, length)
            else:
                self._send_with_faults(opened.file, start, plan)

    def _requested_range(self, size: int, etag: str) -> ByteRange | None:
        header = self.headers.get("Range")
        if not if_range_allows(self.headers.get("If-Range"), etag):
            return None
        try:
            return parse_range(header, size)
        except RangeNotSatisfiable as e:
            raise HttpError(
                HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                f"range {header!r} is not satisfiable: the file has {size} bytes",
                headers={"Content-Range": f"bytes */{size}"},
            ) from e

    def _send_download_headers(
        self, opened: Any, byte_range: ByteRange | None, plan: BodyPlan
    ) -> None:
        if byte_range is None:
            self.send_response(HTTPStatus.OK)
        else:
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header(
                "Content-Range",
                f"bytes {byte_range.start}-{byte_range.end}/{opened.size}",
            )
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(plan.declared_length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", opened.etag)
        self.send_header("Last-Modified", _http_date(int(opened.mtime)))
        if plan.close_after:
            self.close_connection = True
        self.end_headers()

    def _send_file(self, file: BinaryIO, start: int, length: int) -> None:
        offset = start
        end = start + length
        while offset < end and not self.server.stopping.is_set():
            count = min(SENDFILE_CHUNK_BYTES, end - offset)
            self._count_sent(count)
            try:
                sent = self.connection.sendfile(file, offset, count)
            except OSError:
                self._count_sent(-count)
                raise
            self._count_sent(sent - count)
            if sent == 0:
                break
            offset += sent

        if offset < end:
            # The file shrank or the server is stopping, so the body is short.
            self.close_connection = True

    def _send_with_faults(self, file: BinaryIO, start: int, plan: BodyPlan) -> None:
        file.seek(start)
        began = time.monotonic()
        sent = 0
        while sent < plan.send_bytes:
            if plan.stall_at == sent:
                logger.debug("stalling for %s s at byte %d", plan.stall_seconds, sent)
                if self.server.stopping.wait(plan.stall_seconds):
                    break
                # The throttle resumes at its rate instead of catching up.
                began += plan.stall_seconds

            chunk = file.read(_next_chunk_size(plan, sent))
            if not chunk:
                break
            if plan.corrupt:
                chunk = corrupt(chunk)

            # Waiting before each write keeps the bytes sent by any instant t
            # at or below rate * t.
            if plan.bytes_per_second is not None:
                due = began + (sent + len(chunk)) / plan.bytes_per_second
                if self.server.stopping.wait(max(0.0, due - time.monotonic())):
                    break

            self._write(chunk)
            sent += len(chunk)

        if plan.close_after or sent < plan.send_bytes:
            self.close_connection = True

    def _write(self, data: bytes) -> None:
        self._count_sent(len(data))
        try:
            self.wfile.write(data)
        except OSError:
            self._count_sent(-len(data))
            raise

    def _log_request(self) -> None:
        record = self._entry
        if record is None or not logger.isEnabledFor(logging.INFO):
            return
        logger.info(
            "%s %s %s %d %d bytes%s",
            self.address_string(),
            record.method or "-",
            _printable(getattr(self, "path", "") or ""),
            record.status,
            record.bytes_sent,
            f" range={_printable(record.range_header)}" if record.range_header else "",
        )


@functools.lru_cache(maxsize=64)
def _http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


def _next_chunk_size(plan: BodyPlan, sent: int) -> int:
    size = min(COPY_CHUNK_BYTES, plan.send_bytes - sent)
    if plan.stall_at is not None and sent < plan.stall_at:
        size = min(size, plan.stall_at - sent)
    if plan.bytes_per_second is not None:
        size = min(size, max(1, int(plan.bytes_per_second * THROTTLE_SLICE_SECONDS)))
    return size


def _has_request_body(headers: Any) -> bool:
    length = headers.get("Content-Length", "0").strip()
    return length not in ("", "0") or "Transfer-Encoding" in headers


def _error_document(status: HTTPStatus, message: str) -> dict[str, Any]:
    return {"status": int(status), "error": message}


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)

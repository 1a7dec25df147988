"""HTTP client of the middleware: health, releases, release information, manifests.

One :class:`MiddlewareClient` owns one ``requests`` session whose connection
pool is shared by every request, including the parallel downloads of
:mod:`codemate_setup.download`. The client enforces the transport rules:
HTTPS for every host that is not on loopback (unless explicitly allowed), TLS
verification always on, bounded response sizes, and no credentials in logs.
Its JSON requests run through :mod:`codemate_setup.client_json`, which
retries them and bounds their time and size.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import requests
from packaging.version import Version

from codemate_setup import __version__
from codemate_setup.client_json import JsonFetcher
from codemate_setup.config import Limits
from codemate_setup.errors import (
    ManifestError,
    MiddlewareError,
    UsageError,
)
from codemate_setup.head_watch import HeadWatchAdapter
from codemate_setup.middleware_url import is_loopback_host, validate_base_url
from codemate_setup.paths import validate_release_path
from codemate_setup.redact import redact_url
from codemate_setup.versions import parse_version, url_version

logger = logging.getLogger(__name__)

USER_AGENT = f"codemate-setup/{__version__}"

# Smallest connection pool per host. The pool also covers every download
# worker, so parallel downloads reuse connections instead of discarding them.
MIN_POOL_SIZE = 10


class MiddlewareClient:
    """Client of the middleware's HTTP API over one pooled ``requests`` session.

    Requests to the JSON endpoints are retried with exponential backoff and
    full jitter on timeouts, dropped connections, 5xx and 429 (honouring
    ``Retry-After``). A refused connection is not retried there: before any
    download it means a wrong URL or a stopped server, and the user learns it
    at once.

    Attributes:
        session: The shared session; its adapter pools ``pool_size``
            connections per host.
        base_url: The validated base URL, without a trailing slash.
        repo: The ``repo`` query parameter added to every request, if any.
        limits: Bounds on sizes, timeouts, retries and workers.
        pool_size: Connections kept per host by the session's adapter.
    """

    def __init__(
        self,
        base_url: str,
        *,
        repo: str | None = None,
        limits: Limits = Limits(),  # noqa: B008 - Limits is frozen, so sharing is safe
        allow_insecure_http: bool = False,
        cancel: threading.Event | None = None,
    ) -> None:
        """Create the client and its session without sending anything.

        Args:
            base_url: The middleware URL, such as ``http://127.0.0.1:8000``.
            repo: Value of the ``repo`` query parameter, or None to omit it.
            limits: Bounds on what the server can make the client do.
            allow_insecure_http: Accept plain http to a host not on loopback.
            cancel: When set, a JSON request in flight stops within about
                :data:`~codemate_setup.client_json.WATCH_SECONDS` and raises
                SetupCancelledError.

        Raises:
            UsageError: If the URL is invalid, plain http goes to a host that
                is not on loopback without the permission, or ``repo`` is an
                empty string.
        """
        self.base_url = validate_base_url(
            base_url, allow_insecure_http=allow_insecure_http
        )
        if repo is not None and not repo.strip():
            raise UsageError("invalid repo '': expected a repository name or no --repo")

        self.repo = repo
        self.limits = limits
        self.allow_insecure_http = allow_insecure_http
        self.display_url = redact_url(self.base_url) + "/"
        self.pool_size = max(MIN_POOL_SIZE, limits.download_workers)
        self.session = self._build_session()
        self._closed = threading.Event()
        self._json = JsonFetcher(
            self.session,
            limits=limits,
            timeout=self.timeout,
            display_url=self.display_url,
            cancel=cancel,
            closed=self._closed,
        )
        self._environment: dict[str, Any] | None = None
        self._netrc: tuple[tuple[str, str] | None] | None = None
        logger.debug(
            "middleware client for %s (repo=%s, pool=%d)",
            self.display_url,
            repo,
            self.pool_size,
        )

    def _build_session(self) -> requests.Session:
        session = requests.Session()

        # This module and the downloader retry, because they handle
        # Retry-After, resumes and cancellation, so urllib3 must not retry.
        # The adapter fails a request whose response head is one window of
        # the floor on download speed late.
        adapter = HeadWatchAdapter(
            low_speed_bytes=self.limits.low_speed_bytes,
            low_speed_seconds=self.limits.low_speed_seconds,
            pool_connections=4,
            pool_maxsize=self.pool_size,
            max_retries=0,
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)

        # trust_env stays on so that REQUESTS_CA_BUNDLE and proxies apply, and
        # verify stays True so that no setting turns TLS verification off.
        session.verify = True
        session.headers["User-Agent"] = USER_AGENT
        session.headers["Accept-Encoding"] = "identity"
        session.hooks["response"].append(self._check_redirect)
        return session

    def _check_redirect(self, response: requests.Response, **_: Any) -> None:
        """Reject a redirect from the middleware to plain http on a remote host."""
        if not response.is_redirect:
            return

        target = urljoin(response.url, response.headers.get("Location", ""))
        parts = urlsplit(target)
        insecure = parts.scheme != "https" and not is_loopback_host(
            parts.hostname or ""
        )
        if insecure and not self.allow_insecure_http:
            response.close()
            raise MiddlewareError(
                f"the middleware at {self.display_url} redirected "
                f"{redact_url(response.url)} to {redact_url(target)}, which is not "
                "https; fix the middleware or pass --allow-insecure-http"
            )

    def close(self) -> None:
        """Close the session and its pooled connections."""
        self._closed.set()
        self.session.close()

    def __enter__(self) -> MiddlewareClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open_stream(
        self, url: str, headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """Send a GET through the shared session and return the unread response.

        The proxy, CA bundle and ``.netrc`` settings that ``requests`` reads
        from the environment are resolved once per client rather than for
        every request, which matters when thousands of small files download.

        Args:
            url: An absolute URL, usually from :meth:`download_url`.
            headers: Extra request headers, such as ``Range``.

        Returns:
            The response with its body not yet read; the caller closes it.

        Raises:
            requests.RequestException: If the request fails before a response,
                such as a read timeout whose cause is HeadStalled when the
                head is incomplete one ``Limits.low_speed_seconds`` after the
                request.
            MiddlewareError: If the middleware redirects to plain http.
        """
        merged = dict(self.session.headers)
        if headers:
            merged.update(headers)

        prepared = requests.PreparedRequest()
        prepared.prepare(
            method="GET",
            url=url,
            headers=merged,
            auth=self._netrc_auth(),
            cookies=self.session.cookies,
            hooks=self.session.hooks,
        )
        settings = self._environment_settings()
        return self.session.send(
            prepared,
            stream=True,
            timeout=self.timeout,
            allow_redirects=True,
            verify=settings["verify"],
            proxies=settings["proxies"],
            cert=settings["cert"],
        )

    def session_proxies(self) -> dict[str, str]:
        """Return the proxies that apply to the middleware, from the environment."""
        return dict(self._environment_settings()["proxies"] or {})

    def netrc_auth(self) -> tuple[str, str] | None:
        """Return the ``.netrc`` credentials for the middleware host, if any."""
        return self._netrc_auth()

    def check_redirect(self, response: Any) -> None:
        """Reject a redirect to plain http on a remote host, as every request does.

        Raises:
            MiddlewareError: If ``response`` redirects there and
                ``--allow-insecure-http`` was not given.
        """
        self._check_redirect(response)

    def _environment_settings(self) -> dict[str, Any]:
        if self._environment is None:
            self._environment = self.session.merge_environment_settings(
                self.base_url, {}, True, None, None
            )
        return self._environment

    def _netrc_auth(self) -> tuple[str, str] | None:
        """Return the ``.netrc`` credentials for the middleware host, looked up once.

        Credentials in the URL itself win, as in ``requests``.
        """
        if self._netrc is None:
            found = None
            if self.session.trust_env and "@" not in urlsplit(self.base_url).netloc:
                found = requests.utils.get_netrc_auth(self.base_url)
            self._netrc = (found,)
        return self._netrc[0]

    @property
    def timeout(self) -> tuple[float, float]:
        """The ``(connect, read)`` timeouts in seconds for every request."""
        return (self.limits.connect_timeout, self.limits.read_timeout)

    def endpoint_url(self, path: str) -> str:
        """Join an API path such as ``/releases`` to the base URL, with ``repo``."""
        url = self.base_url + path
        if self.repo is not None:
            url += "?" + urlencode({"repo": self.repo})
        return url

    def download_url(self, version: Version, path: str) -> str:
        """Return the URL of one file of a release, with the path percent-quoted.

        Args:
            version: The release version.
            path: A release path such as ``pkg/main.py``.

        Raises:
            ManifestError: If the path is not a safe release path.
        """
        validate_release_path(path)
        quoted = quote(path, safe="/")
        return self.endpoint_url(f"/download/{url_version(version)}/{quoted}")

    def health(self) -> dict[str, Any]:
        """Fetch ``/health`` and return its JSON object.

        Raises:
            MiddlewareError: If the middleware cannot be reached or does not
                return a JSON object.
        """
        document = self._get_json(
            "/health",
            limit=self.limits.max_release_list_bytes,
            description="health status",
        )
        if not isinstance(document, dict):
            raise MiddlewareError(
                f"the health status from the middleware at {self.display_url} must "
                f"be a JSON object, got {type(document).__name__}; check "
                "--middleware-url"
            )
        return document

    def list_releases(self) -> list[dict[str, Any]]:
        """Fetch the releases the middleware offers.

        Each returned entry has a ``"version"`` that :func:`parse_version`
        accepts, rewritten in canonical form (``v3.0.0`` becomes ``3.0.0``).
        Entries without a valid version are left out with a warning.

        Raises:
            MiddlewareError: If the middleware cannot be reached, the list is
                larger than ``Limits.max_release_list_bytes``, or it is not a
                JSON list.
        """
        document = self._get_json(
            "/releases",
            limit=self.limits.max_release_list_bytes,
            description="release list",
        )
        if isinstance(document, dict) and isinstance(document.get("releases"), list):
            document = document["releases"]
        if not isinstance(document, list):
            raise MiddlewareError(
                f"the release list from the middleware at {self.display_url} must "
                f"be a JSON list, got {type(document).__name__}; check "
                "--middleware-url"
            )
        return _valid_release_entries(document)

    def release_info(self, version: Version) -> dict[str, Any]:
        """Fetch the release information ``/codebase/v{VERSION}``.

        Raises:
            MiddlewareError: If the release is not found, the middleware
                cannot be reached, or the response is not a JSON object.
        """
        document = self._get_json(
            f"/codebase/{url_version(version)}",
            limit=self.limits.max_manifest_bytes,
            description=f"release information of {version}",
            version=version,
        )
        if not isinstance(document, dict):
            raise MiddlewareError(
                f"the release information of {version} from the middleware at "
                f"{self.display_url} must be a JSON object, got "
                f"{type(document).__name__}"
            )
        return document

    def fetch_manifest(self, version: Version) -> dict[str, Any]:
        """Fetch and parse the manifest of a release, bounded in size.

        The size limit ``Limits.max_manifest_bytes`` is enforced on the
        ``Content-Length`` header and again while the body streams, so an
        oversized manifest is never held in memory whole.

        Raises:
            MiddlewareError: If the release is not found or the middleware
                cannot be reached.
            ManifestError: If the manifest is too large, is not valid JSON, or
                is not a JSON object.
        """
        document = self._get_json(
            f"/manifest/{url_version(version)}",
            limit=self.limits.max_manifest_bytes,
            description=f"manifest of release {version}",
            version=version,
            error_class=ManifestError,
        )
        if not isinstance(document, dict):
            raise ManifestError(
                f"the manifest of release {version} must be a JSON object, got "
                f"{type(document).__name__}"
            )
        return document

    def _get_json(
        self,
        path: str,
        *,
        limit: int,
        description: str,
        version: Version | None = None,
        error_class: type[Exception] = MiddlewareError,
    ) -> Any:
        """GET the JSON document at an API path, through :class:`JsonFetcher`."""
        return self._json.fetch(
            self.endpoint_url(path),
            limit=limit,
            description=description,
            version=version,
            error_class=error_class,
        )


def _valid_release_entries(entries: list[Any]) -> list[dict[str, Any]]:
    """Keep the release entries whose version parses, in canonical form."""
    valid = []
    for entry in entries:
        raw = entry.get("version") if isinstance(entry, dict) else None
        try:
            version = parse_version(raw) if isinstance(raw, str) else None
        except UsageError:
            version = None

        if version is None:
            logger.warning(
                "ignoring a release entry without a valid version: %.200r", entry
            )
            continue

        valid.append({**entry, "version": str(version)})
    return valid

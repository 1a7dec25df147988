"""Sources of the requirements: the home's file, else the middleware's copy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.version import Version

from codemate_setup.errors import MiddlewareError, VerificationError
from codemate_setup.redact import redact_url

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)

DEFAULT_REQUIREMENTS_PATH = "requirements.txt"


@dataclass(frozen=True)
class RequirementsSource:
    """The text of the requirements and where it came from.

    Attributes:
        text: The content.
        origin: ``local`` for the home's file, ``middleware`` for a download.
        location: The file path, or the (redacted) URL.
    """

    text: str
    origin: str
    location: str


def read_local_requirements(path: Path, max_bytes: int) -> RequirementsSource | None:
    """Read the home's requirements file; None when it does not exist.

    Raises:
        VerificationError: If it exists but is unreadable, too large or not UTF-8.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as e:
        raise VerificationError(
            f"cannot read the requirements file {path}: {e.strerror}; check its "
            "permissions"
        ) from e

    if size > max_bytes:
        raise VerificationError(
            f"the requirements file {path} must be at most {max_bytes} bytes, "
            f"found {size}; check that it is a requirements file"
        )

    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise VerificationError(
            f"cannot read the requirements file {path}: {e.strerror}"
        ) from e
    except UnicodeDecodeError as e:
        raise VerificationError(
            f"the requirements file {path} must be UTF-8 text: {e}"
        ) from e

    return RequirementsSource(text, "local", str(path))


def fetch_middleware_requirements(
    *,
    middleware_url: str,
    version: Version,
    release_path: str,
    repo: str | None,
    allow_insecure_http: bool,
    connect_timeout: float,
    read_timeout: float,
    max_bytes: int,
) -> RequirementsSource:
    """Download the requirements file of an installed version from the middleware.

    Args:
        middleware_url: The middleware's base URL.
        version: The installed version.
        release_path: The file's path in the release, such as ``requirements.txt``.
        repo: The ``repo`` query parameter, if any.
        allow_insecure_http: Accept plain http to a host not on loopback.
        connect_timeout: Seconds to wait for the connection.
        read_timeout: Seconds to wait for data.
        max_bytes: Largest file accepted.

    Raises:
        MiddlewareError: If the middleware cannot be reached, does not have
            the file, or sends more than ``max_bytes``.
        UsageError: If the middleware URL is invalid.
        ManifestError: If ``release_path`` is not a safe release path.
    """
    # requests is imported here because a run where every check passes never
    # downloads, and the import is a noticeable part of that run's time.
    import requests

    from codemate_setup.client import MiddlewareClient
    from codemate_setup.retry import describe_request_error

    with MiddlewareClient(
        middleware_url, repo=repo, allow_insecure_http=allow_insecure_http
    ) as client:
        url = client.download_url(version, release_path)
        shown = redact_url(url)
        logger.debug("fetching the requirements of %s from %s", version, shown)
        try:
            with client.session.get(
                url, stream=True, timeout=(connect_timeout, read_timeout)
            ) as response:
                if response.status_code == 404:
                    raise MiddlewareError(
                        f"the middleware has no {release_path} for version {version} "
                        f"({shown} responded with HTTP 404)"
                    )
                if response.status_code != 200:
                    status = response.status_code
                    raise MiddlewareError(
                        f"the middleware responded with HTTP {status} for {shown}"
                    )
                body = _read_bounded(response, max_bytes, shown)
        except requests.RequestException as e:
            raise MiddlewareError(
                f"cannot reach the middleware at {client.display_url}: "
                f"{describe_request_error(e)}"
            ) from e

    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MiddlewareError(f"the requirements at {shown} are not UTF-8: {e}") from e
    return RequirementsSource(text, "middleware", shown)


def _read_bounded(response: requests.Response, max_bytes: int, shown: str) -> bytes:
    received = bytearray()
    for chunk in response.iter_content(64 * 1024):
        received += chunk
        if len(received) > max_bytes:
            raise MiddlewareError(
                f"the requirements at {shown} must be at most {max_bytes} bytes, "
                "but the middleware sent more"
            )
    return bytes(received)

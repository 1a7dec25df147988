"""Validation of the middleware base URL.

Plain http is accepted only for loopback hosts (``localhost``, ``127.0.0.0/8``,
``::1``) unless the user passes ``--allow-insecure-http``, so credentials and
release bytes never cross a network unencrypted by accident.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from codemate_setup.errors import UsageError
from codemate_setup.redact import redact_url


def is_loopback_host(host: str) -> bool:
    """Tell whether a URL host is a loopback name or address.

    ``localhost``, ``127.0.0.0/8`` and ``::1`` are loopback; every other name
    counts as remote, even one that happens to resolve to a loopback address.
    """
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def validate_base_url(base_url: str, *, allow_insecure_http: bool = False) -> str:
    """Check a middleware base URL and return it without a trailing slash.

    Args:
        base_url: Such as ``https://updates.example.com`` or
            ``http://127.0.0.1:8000/api``.
        allow_insecure_http: Accept plain ``http`` for hosts not on loopback.

    Returns:
        The normalized base URL.

    Raises:
        UsageError: If the URL is not an absolute http(s) URL with a host,
            carries a query or fragment, has an invalid port, or uses plain
            http to a host that is not on loopback without the permission.
    """
    safe_url = _safe_display(base_url)
    hint = "expected a URL such as https://updates.example.com"
    if not isinstance(base_url, str) or not base_url.strip():
        raise UsageError(f"invalid middleware URL {safe_url!r}: {hint}")

    text = base_url.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise UsageError(f"invalid middleware URL {safe_url!r}: {e}; {hint}") from e

    if parts.scheme not in ("http", "https") or not parts.hostname:
        if "://" not in base_url:
            hint = _missing_scheme_hint(text)
        raise UsageError(f"invalid middleware URL {safe_url!r}: {hint}")
    if parts.query or parts.fragment:
        raise UsageError(
            f"invalid middleware URL {safe_url!r}: it must not contain a query or a "
            "fragment; pass the repository with --repo"
        )
    if port == 0:
        raise UsageError(f"invalid middleware URL {safe_url!r}: port 0 is not valid")

    insecure = parts.scheme == "http" and not is_loopback_host(parts.hostname)
    if insecure and not allow_insecure_http:
        raise UsageError(
            f"the middleware URL must use https for a host that is not on "
            f"loopback, got {safe_url}; use https or pass --allow-insecure-http"
        )

    return text


def _missing_scheme_hint(text: str) -> str:
    """Suggest the URL with a scheme, for input such as ``127.0.0.1:8000``."""
    try:
        host = urlsplit(f"//{text}").hostname
    except ValueError:
        host = None
    scheme = "http" if host and is_loopback_host(host) else "https"
    return f"the scheme is missing; did you mean {redact_url(f'{scheme}://{text}')}?"


def _safe_display(base_url: object) -> str:
    """Return the URL for a message, with credentials masked even without a scheme."""
    if not isinstance(base_url, str):
        return repr(base_url)
    if "://" in base_url:
        return redact_url(base_url)
    # Without a scheme, "user:pw@host" would not parse as user information.
    return redact_url(f"//{base_url}").removeprefix("//")

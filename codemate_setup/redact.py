"""Removal of credentials from URLs and text before they reach a log or a message.

A middleware URL may carry a user name and password (``https://user:pw@host``)
and a download URL may carry a signed query (``?token=…``). Every URL that the
client logs or puts in an error goes through :func:`redact_url` or
:func:`redact_text` first.

NOTE: a library exception chained with ``from e`` keeps its own message, which
can contain the query of a URL that the middleware redirected to. A traceback
logged at DEBUG therefore shows such a query unmasked.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"

# Query keys whose values are secrets, compared in lower case. A key also
# counts as secret when it ends in one of these words, as in ``api_key``.
SECRET_QUERY_KEYS = (
    "token",
    "key",
    "password",
    "passwd",
    "pwd",
    "secret",
    "signature",
    "sig",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "session",
)

# "scheme://user:password@" or "scheme://user@" inside free text.
_USERINFO_IN_TEXT = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")

# "name=value" pairs inside free text, such as a query printed by urllib3.
_PAIR_IN_TEXT = re.compile(r"(?P<name>[A-Za-z0-9_.-]+)=(?P<value>[^&\s'\"#)]*)")


def is_secret_key(name: str) -> bool:
    """Tell whether a query parameter name is one whose value is a secret."""
    lowered = name.lower()
    return any(
        lowered == word or lowered.endswith(("_" + word, "-" + word, "." + word))
        for word in SECRET_QUERY_KEYS
    )


def redact_url(url: str) -> str:
    """Return ``url`` with its user information and secret query values masked.

    ``https://bob:pw@host/x?token=abc&repo=app`` becomes
    ``https://***@host/x?token=***&repo=app``. Text that does not parse as a
    URL is passed to :func:`redact_text` instead.

    Args:
        url: Any URL, possibly with credentials.

    Returns:
        The URL, safe to log.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)

    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"

    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [
                (name, REDACTED if is_secret_key(name) else value)
                for name, value in pairs
            ],
            safe="*",
        )

    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Mask URL user information and secret ``name=value`` pairs in free text.

    Library error messages quote URLs in several forms (whole URLs, or a bare
    path with its query after "url:"), so this works on any text rather than
    on parsed URLs.

    Args:
        text: A message that may contain URLs.

    Returns:
        The text, safe to log.
    """
    text = _USERINFO_IN_TEXT.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)

    def mask_pair(match: re.Match[str]) -> str:
        if is_secret_key(match.group("name")):
            return f"{match.group('name')}={REDACTED}"
        return match.group(0)

    return _PAIR_IN_TEXT.sub(mask_pair, text)

"""Validation and comparison of release version strings (PEP 440)."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from codemate_setup.errors import UsageError

# Maximum length of a version string. Real release versions are far shorter.
MAX_VERSION_LENGTH = 64


def parse_version(text: str) -> Version:
    """Parse a user- or server-supplied version such as ``3.0.0`` or ``v3.0.0``.

    Only PEP 440 versions are accepted, so the result is safe to put in a URL or
    a file name.

    Args:
        text: The version as typed, with or without a leading ``v``.

    Returns:
        The parsed version.

    Raises:
        UsageError: If the text is empty, too long or not a PEP 440 version.
    """
    candidate = text.strip() if isinstance(text, str) else ""
    if candidate[:1] in ("v", "V"):
        candidate = candidate[1:]

    if not candidate or len(candidate) > MAX_VERSION_LENGTH:
        raise UsageError(
            f"invalid version {text!r}: expected a release version such as 3.0.0"
        )

    # packaging tolerates surrounding spaces and a leading "v"; a version that
    # reaches a URL or a path must contain only the canonical characters.
    if not all(ch.isalnum() or ch in ".+-_!" for ch in candidate):
        raise UsageError(
            f"invalid version {text!r}: expected a release version such as 3.0.0"
        )

    try:
        return Version(candidate)
    except InvalidVersion as e:
        raise UsageError(
            f"invalid version {text!r}: expected a release version such as 3.0.0"
        ) from e


def version_text(version: Version) -> str:
    """Return the canonical text of a version, without the ``v`` prefix."""
    return str(version)


def url_version(version: Version) -> str:
    """Return the form used in middleware URLs, such as ``v3.0.0``."""
    return f"v{version}"

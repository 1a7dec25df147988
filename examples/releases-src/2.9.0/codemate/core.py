"""Core of the example application."""

from codemate.legacy_utils import shout


def describe() -> str:
    """Return a one-line description of this release."""
    return shout("an example release without chat")

"""Core of the example application."""

from codemate.chat import greeting


def describe() -> str:
    """Return a one-line description of this release."""
    return f"an example release with chat: {greeting()}"

"""Helpers that the 3.0.0 release removes."""


def shout(text: str) -> str:
    """Return ``text`` in upper case."""
    return text.upper()

"""Chat module, new in 3.0.0."""


def greeting() -> str:
    """Return the chat's first message."""
    return "Hello from CodeMate chat"

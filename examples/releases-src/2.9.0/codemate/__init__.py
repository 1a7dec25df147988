"""The example CodeMate application package."""

__version__ = "2.9.0"

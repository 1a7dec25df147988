"""The example CodeMate application package."""

__version__ = "3.0.0"

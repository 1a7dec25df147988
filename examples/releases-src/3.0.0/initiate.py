#!/usr/bin/env python3
"""Start the example CodeMate application: print its version and exit."""

from codemate import __version__
from codemate.core import describe

if __name__ == "__main__":
    print(f"CodeMate {__version__}")
    print(describe())

"""Reference middleware: serves a folder of published releases over HTTP.

Use it from tests in-process::

    with start_middleware(releases_dir, faults=FaultConfig()) as handle:
        requests.get(f"{handle.url}/releases")

or from the command line: ``python -m codemate_setup.middleware RELEASES_DIR``.
"""

from codemate_setup.middleware.faults import FaultConfig
from codemate_setup.middleware.records import RequestRecord
from codemate_setup.middleware.server import MiddlewareHandle, start_middleware

__all__ = ["FaultConfig", "MiddlewareHandle", "RequestRecord", "start_middleware"]

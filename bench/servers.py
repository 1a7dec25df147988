"""The reference middleware in a child process, for benchmarks.

A child process keeps the server's work off the measured process's CPU time
and its GIL, as it is for curl and for a real client.
"""

from __future__ import annotations

import logging
import selectors
import signal
import subprocess
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class Middleware:
    """``python -m codemate_setup.middleware`` serving a releases folder.

    Use as a context manager; ``url`` is set once it is listening.

    Args:
        releases_dir: Folder written by ``codemate_setup.publish``.
        python: Interpreter to run the middleware with.
        root: Repository root, the server's working folder.
    """

    def __init__(self, releases_dir: Path, python: str, root: Path) -> None:
        self.releases_dir = releases_dir
        self.python = python
        self.root = root
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> str:
        """Start the server on a free loopback port and return its URL.

        Raises:
            RuntimeError: If the server exits or prints no URL in time.
        """
        command = [
            self.python,
            "-m",
            "codemate_setup.middleware",
            str(self.releases_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--quiet",
        ]
        self._process = subprocess.Popen(
            command,
            # With -m, the working folder is where the package is found.
            cwd=self.root,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self._read_url(self._process)
        logger.info("middleware for %s at %s", self.releases_dir, self.url)
        return self.url

    @property
    def pid(self) -> int:
        """Process id of the running server."""
        assert self._process is not None
        return self._process.pid

    def stop(self) -> None:
        """Stop the server with SIGTERM, and SIGKILL it if it hangs."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Middleware:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _read_url(self, process: subprocess.Popen[str]) -> str:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(START_TIMEOUT_SECONDS)
        line = process.stdout.readline().strip() if ready else ""
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(
                f"the middleware for {self.releases_dir} printed no URL within "
                f"{START_TIMEOUT_SECONDS:.0f} s (got {line!r}); run "
                f"'python -m codemate_setup.middleware {self.releases_dir}' to see why"
            )
        return line

"""Options of an environment verification: what to check, how, and the bounds."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from codemate_setup.config import HomeLayout, Limits, resolve_middleware_url
from codemate_setup.errors import UsageError

GIB = 1024**3
MIB = 1024**2

# Environment variables that set the warning thresholds, in MiB.
MIN_FREE_DISK_VARIABLE = "CODEMATE_MIN_FREE_DISK_MB"
MIN_MEMORY_VARIABLE = "CODEMATE_MIN_MEMORY_MB"


class Installer(str, Enum):
    """Tool that creates the environment and installs packages."""

    AUTO = "auto"
    UV = "uv"
    PIP = "pip"


@dataclass(frozen=True)
class Thresholds:
    """Values below which a system check warns; none of them fails a check.

    Attributes:
        min_free_disk_bytes: Free space wanted on the drive of the home and of
            the install folder.
        min_memory_bytes: Available memory wanted, within a container's limit.
        python_requires: PEP 440 specifier for the Python version, used when
            the installed listing declares no ``requires_python`` of its own.
    """

    # NOTE: both defaults are estimates, not measured needs of the application.
    min_free_disk_bytes: int = 2 * GIB
    min_memory_bytes: int = 4 * GIB
    python_requires: str = ">=3.10"


@dataclass(frozen=True)
class VerifyLimits:
    """Timeouts and sizes that bound each check.

    Attributes:
        port_connect_timeout: Seconds to wait for a TCP connection to a port.
        port_read_timeout: Seconds to wait for an HTTP response from a service.
        probe_timeout: Seconds the environment's interpreter may take to
            report its packages.
        venv_timeout: Seconds that creating an environment may take.
        install_batch_size: Requirements installed per installer call; the
            package progress moves after each call.
        install_timeout: Seconds one installer call may take.
        max_requirements_bytes: Largest requirements file accepted, local or
            from the middleware.
        max_include_depth: Deepest chain of ``-r`` includes followed.
    """

    port_connect_timeout: float = 0.2
    port_read_timeout: float = 0.5
    probe_timeout: float = 60.0
    venv_timeout: float = 600.0
    install_batch_size: int = 10
    install_timeout: float = 3600.0
    max_requirements_bytes: int = 1 * MIB
    max_include_depth: int = 10


@dataclass
class VerifyOptions:
    """Everything one verification run needs to know.

    Attributes:
        layout: The home folder layout.
        middleware_url: Base URL of the middleware, for the requirements copy.
        check_only: Diagnose without changing anything on disk.
        deep: Compare the hashes of application files, not only their sizes.
        installer: Which tool creates the environment and installs packages.
        index_url: Package index for installs, passed to the installer.
        find_links: Folders or URLs of wheels for installs.
        no_index: Install only from ``find_links``, never from an index.
        python: Interpreter that creates the environment; None for the one
            running this code.
        ports: Service ports by environment variable name; None reads them
            from the environment variables and defaults.
        uv_path: The ``uv`` executable; None finds it on ``PATH`` or beside
            this interpreter.
        repo: The middleware's ``repo`` query parameter, if any.
        allow_insecure_http: Accept plain http to a middleware not on loopback.
        thresholds: Warning thresholds of the system checks.
        limits: Bounds on middleware requests.
        verify_limits: Timeouts and sizes of the checks.
    """

    layout: HomeLayout
    middleware_url: str = field(default_factory=resolve_middleware_url)
    check_only: bool = False
    deep: bool = False
    installer: Installer = Installer.AUTO
    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    python: Path | None = None
    ports: dict[str, int] | None = None
    uv_path: Path | None = None
    repo: str | None = None
    allow_insecure_http: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    limits: Limits = field(default_factory=Limits)
    verify_limits: VerifyLimits = field(default_factory=VerifyLimits)

    def __post_init__(self) -> None:
        """Accept the plain forms callers pass: a string installer, one link.

        Raises:
            UsageError: If ``installer`` is not auto, uv or pip.
        """
        try:
            self.installer = Installer(self.installer)
        except ValueError as e:
            raise UsageError(
                f"invalid installer {self.installer!r}: expected auto, uv or pip"
            ) from e

        if isinstance(self.find_links, (str, os.PathLike)):
            self.find_links = (os.fspath(self.find_links),)
        else:
            self.find_links = tuple(os.fspath(link) for link in self.find_links or ())

        if self.python is not None:
            self.python = Path(self.python)
        if self.uv_path is not None:
            self.uv_path = Path(self.uv_path)


def threshold_from_environment(
    variable: str, default_bytes: int, environ: dict[str, str] | None = None
) -> int:
    """Read a threshold in MiB from an environment variable, in bytes.

    Args:
        variable: Such as ``CODEMATE_MIN_FREE_DISK_MB``.
        default_bytes: Returned when the variable is unset or empty.
        environ: The environment; ``os.environ`` by default.

    Raises:
        UsageError: If the variable is not a whole number of MiB.
    """
    env = os.environ if environ is None else environ
    raw = env.get(variable, "").strip()
    if not raw:
        return default_bytes

    return parse_megabytes(raw, variable) * MIB


def parse_megabytes(text: str, name: str) -> int:
    """Parse a non-negative whole number of MiB given by the user.

    Raises:
        UsageError: If ``text`` is not a whole number from 0 up.
    """
    if not text.isdigit():
        raise UsageError(
            f"invalid {name} {text!r}: expected a whole number of MiB, such as 2048"
        )
    return int(text)

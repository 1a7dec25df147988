"""Configuration: the home folder layout, the middleware URL, ports and limits.

Precedence everywhere: command-line flag, then environment variable, then
default.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from codemate_setup.errors import UsageError

DEFAULT_HOME = "~/.codemate.test"
DEFAULT_MIDDLEWARE_HOST = "localhost"
DEFAULT_MIDDLEWARE_PORT = "8000"

# Service ports checked by the verification, keyed by environment variable.
DEFAULT_SERVICE_PORTS = {
    "HTTP_SERVER_PORT": 45223,
    "WEBSOCKET_SERVER_PORT": 45224,
    "QDRANT_PORT": 45225,
    "OLLAMA_PORT": 11434,
}


def resolve_home(flag: str | os.PathLike[str] | None = None) -> Path:
    """Return the home folder from ``--home``, ``CODEMATE_HOME`` or the default."""
    raw = flag if flag else os.environ.get("CODEMATE_HOME") or DEFAULT_HOME
    return Path(os.path.expanduser(os.fspath(raw))).absolute()


def home_flag(home: Path) -> str:
    """Return `` --home HOME`` for a command that must name ``home``.

    A hint that a person copies has to reach the same home: it is empty only
    for the home a command finds without the flag.
    """
    if home == resolve_home():
        return ""
    return f" --home {shlex.quote(str(home))}"


def resolve_middleware_url(flag: str | None = None) -> str:
    """Return the middleware base URL, without a trailing slash.

    ``--middleware-url`` wins; otherwise ``UPDATER_SERVER_HOST`` and
    ``UPDATER_SERVER_PORT`` form ``http://HOST:PORT``.

    Raises:
        UsageError: If ``UPDATER_SERVER_PORT`` is not a port number.
    """
    if flag:
        return flag.rstrip("/")

    host = os.environ.get("UPDATER_SERVER_HOST") or DEFAULT_MIDDLEWARE_HOST
    port = os.environ.get("UPDATER_SERVER_PORT") or DEFAULT_MIDDLEWARE_PORT
    if not _is_port_number(port):
        raise UsageError(
            f"invalid UPDATER_SERVER_PORT {port!r}: expected a port number from 1 "
            "to 65535; fix the variable or pass --middleware-url"
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass(frozen=True)
class HomeLayout:
    """Paths of everything the toolkit keeps in its home folder."""

    home: Path
    install_dir: Path

    @classmethod
    def create(
        cls, home: str | os.PathLike[str] | None = None, install_dir: str | None = None
    ) -> HomeLayout:
        """Build the layout from flags, falling back to environment and defaults.

        Raises:
            UsageError: If the home, or the nearest existing folder above it,
                is not a folder.
        """
        root = resolve_home(home)
        _check_home(root)
        app = Path(os.path.expanduser(install_dir)).absolute() if install_dir else None
        return cls(home=root, install_dir=app or root / "app")

    @property
    def state_file(self) -> Path:
        return self.home / "setup_state.json"

    @property
    def state_lock(self) -> Path:
        return self.home / "setup_state.lock"

    @property
    def setup_lock(self) -> Path:
        """Lock held for the whole of a setup, so one runs per home at a time."""
        return self.home / "setup.lock"

    @property
    def version_file(self) -> Path:
        return self.home / "version.txt"

    @property
    def requirements_file(self) -> Path:
        return self.home / "requirements.txt"

    @property
    def installed_listing(self) -> Path:
        return self.home / "installed.json"

    @property
    def environment_dir(self) -> Path:
        return self.home / "environment"

    @property
    def children_dir(self) -> Path:
        """Records of the tools that a running verification has started."""
        return self.home / "children"

    @property
    def staging_dir(self) -> Path:
        return self.home / "staging"

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

    @property
    def journal_file(self) -> Path:
        return self.home / "journal.json"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


@dataclass(frozen=True)
class Limits:
    """Every bound on what a server can make the client do, in one place."""

    max_manifest_bytes: int = 32 * 1024 * 1024
    max_release_list_bytes: int = 4 * 1024 * 1024
    max_files: int = 200_000
    max_file_bytes: int = 16 * 1024**3
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    # Whole seconds one attempt at a JSON request may take, headers and body
    # together, so a server that trickles bytes cannot hold a run forever.
    json_request_seconds: float = 120.0
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 60.0
    # A download attempt that brings fewer bytes than this in any window of
    # low_speed_seconds counts as stalled and is retried; 0 turns this off.
    low_speed_bytes: int = 1024
    low_speed_seconds: float = 30.0
    download_workers: int = 8
    chunk_bytes: int = 1024 * 1024
    keep_backups: int = 3
    # Free space kept beyond the download size, so the disk never fills up.
    disk_reserve_bytes: int = 64 * 1024 * 1024


def service_ports(environ: dict[str, str] | None = None) -> dict[str, int]:
    """Return the checked service ports, each overridable by its variable.

    Raises:
        UsageError: If a variable is set to something other than a port number.
    """
    env = os.environ if environ is None else environ
    ports = {}
    for name, default in DEFAULT_SERVICE_PORTS.items():
        raw = env.get(name)
        if raw is None or raw == "":
            ports[name] = default
            continue
        if not _is_port_number(raw):
            raise UsageError(
                f"invalid {name} {raw!r}: expected a port number from 1 to 65535"
            )
        ports[name] = int(raw)
    return ports


@dataclass
class RunOptions:
    """Options shared by the update and verification phases."""

    layout: HomeLayout
    middleware_url: str = field(default_factory=resolve_middleware_url)
    repo: str | None = None
    allow_insecure_http: bool = False
    limits: Limits = field(default_factory=Limits)


def _is_port_number(text: str) -> bool:
    # isascii() keeps out digits of other scripts, which int() would accept.
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536


def _check_home(home: Path) -> None:
    """Reject a home that cannot become a folder before anything is written."""
    for candidate in (home, *home.parents):
        if not os.path.lexists(candidate):
            continue
        if candidate.is_dir():
            return
        where = "it" if candidate == home else str(candidate)
        if candidate.is_symlink() and not candidate.exists():
            problem = f"{where} is a symbolic link to {os.readlink(candidate)}, "
            problem += "which does not exist"
        else:
            problem = f"{where} exists and is not a folder"
        raise UsageError(
            f"invalid home {home}: {problem}; choose a folder with --home or "
            "CODEMATE_HOME"
        )

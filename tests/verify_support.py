"""Helpers of the verification tests: homes, options, environments, snapshots."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import subprocess
from pathlib import Path

from codemate_setup.config import HomeLayout
from codemate_setup.verify import Installer, Thresholds, VerifyOptions
from codemate_setup.verify.environment import interpreter_path
from codemate_setup.verify.ports import SERVICES
from codemate_setup.verify.probe import probe_interpreter

APP_FILES = {"initiate.py": b"print('CodeMate')\n", "pkg/core.py": b"VALUE = 1\n"}
REQUIREMENTS = (
    "cm-beta==1.0\n"
    "cm-alpha==1.0\n"
    "# never for a Python 3 interpreter, and absent from the wheelhouse\n"
    'cm-zeta==9.9; python_version < "3"\n'
)


def free_port() -> int:
    """Return a loopback port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_service_ports() -> dict[str, int]:
    """Return a free port for each service, so no local service disturbs a test.

    Every socket stays bound until all ports are known, so no two are equal.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in SERVICES]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        ports = [sock.getsockname()[1] for sock in sockets]
    return dict(zip(SERVICES, ports, strict=True))


def install_app(home: Path, version: str = "3.0.0") -> None:
    """Write an installed application: files, listing and version file."""
    app = home / "app"
    entries = {}
    for path, data in APP_FILES.items():
        target = app / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        entries[path] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "mode": "0644",
            "mtime_ns": target.stat().st_mtime_ns,
        }
    listing = {
        "format": 1,
        "version": version,
        "entry_point": "initiate.py",
        "requirements": "requirements.txt",
        "files": entries,
    }
    (home / "installed.json").write_text(json.dumps(listing))
    (home / "version.txt").write_text(f"{version}\n")


def make_home(
    root: Path, *, requirements: str | None = REQUIREMENTS, installed: bool = True
) -> Path:
    """Create a home with an installation and a requirements file."""
    home = root / "home"
    home.mkdir(parents=True)
    if installed:
        install_app(home)
    if requirements is not None:
        (home / "requirements.txt").write_text(requirements)
    return home


def options_for(home: Path, wheelhouse: Path, **changes: object) -> VerifyOptions:
    """Options that install from ``wheelhouse`` only, with pip, on free ports."""
    values: dict[str, object] = {
        "layout": HomeLayout.create(home),
        "middleware_url": f"http://127.0.0.1:{free_port()}",
        "installer": Installer.PIP,
        "find_links": (str(wheelhouse),),
        "no_index": True,
        "ports": free_service_ports(),
        "thresholds": Thresholds(min_free_disk_bytes=0, min_memory_bytes=0),
    }
    values.update(changes)
    return VerifyOptions(**values)  # type: ignore[arg-type]


def installed_versions(env_dir: Path) -> dict[str, str]:
    """Return the canonical names and versions installed in an environment."""
    probe = probe_interpreter(interpreter_path(env_dir), timeout=60)
    return {key: dist.version for key, dist in probe.distributions.items()}


def pip_install(env_dir: Path, wheelhouse: Path, *requirements: str) -> None:
    """Install requirements into an environment from the wheelhouse only."""
    subprocess.run(
        [
            str(interpreter_path(env_dir)),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            *requirements,
        ],
        check=True,
    )


def tree_snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Map every file and link under ``root`` to (size, mtime_ns, sha256 or target)."""
    snapshot = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            snapshot[relative] = (0, 0, "-> " + str(path.readlink()))
        elif path.is_file():
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            snapshot[relative] = (stat.st_size, stat.st_mtime_ns, digest)
        else:
            snapshot[relative] = (0, path.stat().st_mtime_ns, "dir")
    return snapshot

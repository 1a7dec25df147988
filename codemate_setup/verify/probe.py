"""One short run of an interpreter that reports its version, markers and packages.

The script below runs inside the environment's own interpreter, so the marker
values and the installed distributions are that interpreter's, not those of the
Python running the verification. It needs only the standard library.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from codemate_setup.errors import VerificationError
from codemate_setup.verify.process import child_environment

logger = logging.getLogger(__name__)

# Marker values follow the PEP 508 definitions. The script also runs on an
# interpreter too old for the application, so that its version can be reported.
PROBE_SCRIPT = r"""
import json, os, platform, sys

def full_version(info):
    text = "%d.%d.%d" % (info.major, info.minor, info.micro)
    if info.releaselevel != "final":
        text += info.releaselevel[0] + str(info.serial)
    return text

markers = {
    "implementation_name": sys.implementation.name,
    "implementation_version": full_version(sys.implementation.version),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}

distributions = []
metadata = None
if "--no-distributions" not in sys.argv:
    try:
        from importlib import metadata
    except ImportError:
        pass
if metadata is not None:
    for dist in metadata.distributions():
        meta = dist.metadata
        if not meta or not meta["Name"]:
            continue
        try:
            direct_url = dist.read_text("direct_url.json")
        except Exception:
            direct_url = None
        distributions.append([
            meta["Name"], meta["Version"], meta.get_all("Requires-Dist") or [],
            direct_url,
        ])

json.dump({
    "python": platform.python_version(),
    "executable": sys.executable,
    "prefix": sys.prefix,
    "base_prefix": getattr(sys, "base_prefix", sys.prefix),
    "markers": markers,
    "distributions": distributions,
}, sys.stdout)
"""


@dataclass(frozen=True)
class InstalledDistribution:
    """A distribution installed in an environment.

    Attributes:
        name: The name as its metadata spells it.
        version: The version text from its metadata.
        requires: Its ``Requires-Dist`` lines.
        direct_url: The URL it was installed from, for direct references.
    """

    name: str
    version: str
    requires: tuple[str, ...] = ()
    direct_url: str | None = None

    @property
    def key(self) -> str:
        """The canonical name, such as ``cm-alpha`` for ``CM_Alpha``."""
        return canonicalize_name(self.name)


@dataclass(frozen=True)
class InterpreterProbe:
    """Facts an interpreter reported about itself.

    Attributes:
        python: Its version, such as ``3.11.7``.
        executable: Its own ``sys.executable``.
        prefix: ``sys.prefix``, the environment folder for a venv.
        base_prefix: ``sys.base_prefix``, the Python it was created from.
        markers: PEP 508 marker values of this interpreter.
        distributions: Installed distributions by canonical name; the first
            one on ``sys.path`` wins, as it does for imports.
    """

    python: str
    executable: str
    prefix: str
    base_prefix: str
    markers: dict[str, str]
    distributions: dict[str, InstalledDistribution] = field(default_factory=dict)


def probe_interpreter(
    python: Path, timeout: float, *, distributions: bool = True
) -> InterpreterProbe:
    """Run ``python -I`` once and parse what it reports.

    ``-I`` keeps the current folder, the user's site-packages and ``PYTHON*``
    variables out of the child's ``sys.path``.

    Args:
        python: The interpreter.
        timeout: Seconds it may take.
        distributions: Also list the installed distributions. Without them
            the run skips ``site`` (``-S``) and is faster.

    Raises:
        VerificationError: If the interpreter cannot be started, fails, times
            out or prints something other than the expected document.
    """
    if distributions:
        command = [str(python), "-I", "-c", PROBE_SCRIPT]
    else:
        command = [str(python), "-I", "-S", "-c", PROBE_SCRIPT, "--no-distributions"]
    try:
        completed = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=child_environment(),
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise VerificationError(
            f"the interpreter {python} timed out after {timeout:.0f} s"
        ) from e
    except OSError as e:
        raise VerificationError(f"the interpreter {python} cannot run: {e}") from e

    if completed.returncode != 0:
        error = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = error[-1] if error else f"exit status {completed.returncode}"
        raise VerificationError(f"the interpreter {python} failed: {reason}")

    try:
        return parse_probe_output(completed.stdout)
    except ValueError as e:
        raise VerificationError(
            f"the interpreter {python} printed an invalid report: {e}"
        ) from e


def parse_probe_output(output: bytes | str) -> InterpreterProbe:
    """Parse the JSON document printed by :data:`PROBE_SCRIPT`.

    Raises:
        ValueError: If the output is not that document.
    """
    document = json.loads(output)
    if not isinstance(document, dict) or not isinstance(document.get("markers"), dict):
        raise ValueError("expected a JSON object with markers")

    distributions: dict[str, InstalledDistribution] = {}
    for entry in document.get("distributions", []):
        dist = _parse_distribution(entry)
        if dist is None:
            logger.debug("ignoring an unreadable distribution entry: %.200r", entry)
            continue
        distributions.setdefault(dist.key, dist)

    return InterpreterProbe(
        python=str(document["python"]),
        executable=str(document["executable"]),
        prefix=str(document["prefix"]),
        base_prefix=str(document["base_prefix"]),
        markers={str(k): str(v) for k, v in document["markers"].items()},
        distributions=distributions,
    )


def _parse_distribution(entry: Any) -> InstalledDistribution | None:
    if not isinstance(entry, list) or len(entry) != 4:
        return None
    name, version, requires, direct_url_text = entry
    if not isinstance(name, str) or not isinstance(version, str):
        return None

    return InstalledDistribution(
        name=name,
        version=version,
        requires=tuple(str(line) for line in requires or ()),
        direct_url=_direct_url(direct_url_text),
    )


def _direct_url(text: Any) -> str | None:
    """Return the ``url`` of a ``direct_url.json`` document (PEP 610)."""
    if not isinstance(text, str):
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    url = document.get("url") if isinstance(document, dict) else None
    return url if isinstance(url, str) else None

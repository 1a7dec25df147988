"""System checks: platform, Python version, free disk and available memory."""

from __future__ import annotations

import logging
import os
import platform
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from codemate_setup.verify.model import CheckResult, CheckStatus

logger = logging.getLogger(__name__)

SUPPORTED_SYSTEMS = ("Linux", "Darwin", "Windows")

# platform.machine() spellings of the architectures releases are built for.
SUPPORTED_MACHINES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "arm64": "arm64",
    "aarch64": "arm64",
}

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def format_bytes(size: int) -> str:
    """Format a byte count with a binary unit, such as ``1.5 GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "B":
        return f"{size} B"
    return f"{value:.1f} {unit}"


def check_platform(system: str, machine: str) -> CheckResult:
    """Check that releases are built for this operating system and architecture.

    Args:
        system: ``platform.system()``, such as ``Linux``.
        machine: ``platform.machine()``, such as ``x86_64``.
    """
    arch = SUPPORTED_MACHINES.get(machine.lower())
    value = f"{system} on {machine}"
    detail = {"system": system, "machine": machine}

    if system in SUPPORTED_SYSTEMS and arch is not None:
        return CheckResult(
            "system.platform", "platform", CheckStatus.OK, value, None, detail
        )

    return CheckResult(
        "system.platform",
        "platform",
        CheckStatus.WARN,
        f"{value} is not a tested platform (tested: "
        f"{', '.join(SUPPORTED_SYSTEMS)} on x86_64 or arm64)",
        "expect problems with packages that ship compiled code",
        detail,
    )


def check_python(version: str, required: str, executable: str) -> CheckResult:
    """Check an interpreter's version against the release's Python requirement.

    Args:
        version: Such as ``3.11.7``.
        required: A PEP 440 specifier set, such as ``>=3.10``.
        executable: The interpreter, named in the message.
    """
    detail = {"version": version, "required": required, "executable": executable}
    try:
        matches = SpecifierSet(required).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion) as e:
        return CheckResult(
            "system.python",
            "Python version",
            CheckStatus.WARN,
            f"cannot compare Python {version} with {required!r}: {e}",
            "check the release's requires_python",
            detail,
        )

    if matches:
        return CheckResult(
            "system.python",
            "Python version",
            CheckStatus.OK,
            f"Python {version} ({executable}) meets {required}",
            None,
            detail,
        )

    return CheckResult(
        "system.python",
        "Python version",
        CheckStatus.FAIL,
        f"Python {version} ({executable}) does not meet {required}",
        f"install a Python that meets {required} and pass it with --python PATH",
        detail,
    )


def existing_ancestor(path: Path) -> Path:
    """Return ``path`` or its nearest existing parent folder.

    The home or install folder may not exist before the first install, but the
    drive that will hold it does.
    """
    candidate = path.absolute()
    while not candidate.exists() and candidate.parent != candidate:
        candidate = candidate.parent
    return candidate


@dataclass(frozen=True)
class DiskUsage:
    """Free space on the drive holding some folders."""

    folders: tuple[Path, ...]
    measured_at: Path
    free_bytes: int


def measure_disks(folders: Iterable[Path]) -> list[DiskUsage]:
    """Measure free space once per drive that contains one of ``folders``.

    Raises:
        OSError: If no parent of a folder can be measured.
    """
    by_device: dict[int, tuple[list[Path], Path]] = {}
    for folder in folders:
        anchor = existing_ancestor(folder)
        device = anchor.stat().st_dev
        if device in by_device:
            by_device[device][0].append(folder)
        else:
            by_device[device] = ([folder], anchor)

    usages = []
    for grouped, anchor in by_device.values():
        free = shutil.disk_usage(anchor).free
        logger.debug("free disk at %s: %d bytes", anchor, free)
        usages.append(DiskUsage(tuple(grouped), anchor, free))
    return usages


def check_disk(usage: DiskUsage, threshold: int, check_id: str) -> CheckResult:
    """Compare the free space of one drive with the threshold."""
    where = " and ".join(str(folder) for folder in usage.folders)
    detail = {
        "folders": [str(folder) for folder in usage.folders],
        "free_bytes": usage.free_bytes,
        "threshold_bytes": threshold,
    }
    value = (
        f"{format_bytes(usage.free_bytes)} free on the drive of {where} "
        f"(threshold {format_bytes(threshold)})"
    )
    if usage.free_bytes >= threshold:
        return CheckResult(check_id, "free disk", CheckStatus.OK, value, None, detail)

    return CheckResult(
        check_id,
        "free disk",
        CheckStatus.WARN,
        value,
        "free disk space on that drive, or move the home with --home",
        detail,
    )


@dataclass(frozen=True)
class CgroupMemory:
    """A container's memory limit and what it has in use, in bytes."""

    limit: int
    usage: int


def effective_available_memory(
    host_available: int, host_total: int, cgroup: CgroupMemory | None
) -> int:
    """Return the memory the application can still use.

    Inside a container the limit is what counts: the host may have plenty
    while the container is nearly out. A limit at or above the host's total
    memory is no limit.
    """
    if cgroup is None or cgroup.limit >= host_total:
        return host_available

    return max(0, min(host_available, cgroup.limit - cgroup.usage))


def read_cgroup_memory(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> CgroupMemory | None:
    """Read this process's memory limit from cgroup v2 or v1, if it has one.

    Reclaimable page cache (``inactive_file``) is not counted as used, the
    same way container tools report usage.

    Args:
        root: The cgroup file system mount.
        proc_cgroup: The ``/proc/self/cgroup`` file naming this process's group.

    Returns:
        The tightest limit on the way from this process's group to the root,
        or None when there is no limit or no cgroup file system.
    """
    groups = _read_group_paths(proc_cgroup)
    v2 = _read_limit_chain(root, groups.get("", "/"), _V2_FILES)
    if v2 is not None:
        return v2

    return _read_limit_chain(root / "memory", groups.get("memory", "/"), _V1_FILES)


# (limit file, usage file, inactive page cache key in memory.stat)
_V2_FILES = ("memory.max", "memory.current", "inactive_file")
_V1_FILES = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def _read_group_paths(proc_cgroup: Path) -> dict[str, str]:
    """Map each controller (``""`` for cgroup v2) to this process's group path."""
    try:
        text = proc_cgroup.read_text(encoding="utf-8")
    except OSError:
        return {}

    groups = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(","):
            groups[controller] = parts[2]
    return groups


def _read_limit_chain(
    mount: Path, group: str, files: tuple[str, str, str]
) -> CgroupMemory | None:
    limit_name, usage_name, inactive_key = files
    best: CgroupMemory | None = None

    relative = PurePosixPath(group.strip() or "/").relative_to("/")
    chain = [relative, *relative.parents] if relative.parts else [relative]
    for part in chain:
        folder = mount.joinpath(*part.parts)
        limit = _read_int(folder / limit_name)
        if limit is None:
            continue
        usage = _read_int(folder / usage_name) or 0
        usage -= _read_stat(folder / "memory.stat", inactive_key)
        if best is None or limit - usage < best.limit - best.usage:
            best = CgroupMemory(limit=limit, usage=max(0, usage))

    if best is not None:
        logger.debug("cgroup memory under %s: %s", mount, best)
    return best


def _read_int(path: Path) -> int | None:
    """Read a cgroup number; ``max`` (no limit) and unreadable files give None."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _read_stat(path: Path, key: str) -> int:
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return 0
    for line in lines:
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def check_memory(available: int, threshold: int, limited: bool) -> CheckResult:
    """Compare the available memory with the threshold.

    Args:
        available: Bytes still available to the application.
        threshold: Bytes wanted.
        limited: The number comes from a container's memory limit.
    """
    scope = " within the container's memory limit" if limited else ""
    value = (
        f"{format_bytes(available)} available{scope} "
        f"(threshold {format_bytes(threshold)})"
    )
    detail = {
        "available_bytes": available,
        "threshold_bytes": threshold,
        "container_limit": limited,
    }
    if available >= threshold:
        return CheckResult(
            "system.memory", "memory", CheckStatus.OK, value, None, detail
        )

    return CheckResult(
        "system.memory",
        "memory",
        CheckStatus.WARN,
        value,
        "close other programs or raise the container's memory limit; "
        "large local models may fail to load",
        detail,
    )


def measure_memory() -> tuple[int, bool]:
    """Return the available memory in bytes and whether a cgroup limit applies."""
    import psutil  # imported here: it costs time only when memory is checked

    memory = psutil.virtual_memory()
    cgroup = read_cgroup_memory() if os.name == "posix" else None
    available = effective_available_memory(memory.available, memory.total, cgroup)
    limited = cgroup is not None and cgroup.limit < memory.total
    return available, limited


def current_platform() -> tuple[str, str]:
    """Return ``platform.system()`` and ``platform.machine()``."""
    return platform.system(), platform.machine()

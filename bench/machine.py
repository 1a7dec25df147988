"""Facts about the machine and the software a benchmark run used."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

GIB = 1024**3


def machine_facts(workdir: Path, root: Path) -> dict[str, str]:
    """Collect CPU, memory, OS, Python, disk and tool versions for the report.

    Args:
        workdir: The folder the data is generated in; its free space is shown.
        root: The repository, whose commit is shown when git is available.
    """
    usage = shutil.disk_usage(workdir)
    memory = psutil.virtual_memory()
    return {
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {psutil.cpu_count(logical=False)} "
        "physical",
        "memory": f"{memory.total / GIB:.1f} GiB",
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "file system of the data": _file_system(workdir),
        "disk free at start": f"{usage.free / GIB:.1f} GiB",
        "load average at start (1, 5, 15 min)": _load_average(),
        "curl": " ".join(_first_line(["curl", "--version"]).split()[:2]),
        "pip": _first_line([sys.executable, "-m", "pip", "--version"]).split(" from ")[
            0
        ],
        "commit": _commit(root),
    }


def _load_average() -> str:
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "not available"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _file_system(folder: Path) -> str:
    best = None
    for partition in psutil.disk_partitions(all=True):
        mount = Path(partition.mountpoint)
        if folder.resolve().is_relative_to(mount) and (
            best is None or len(str(mount)) > len(str(best.mountpoint))
        ):
            best = partition
    return best.fstype if best else "unknown"


def _commit(root: Path) -> str:
    commit = _first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    # The page and the results that a run rewrites do not change what it measures.
    changed = _first_line(
        [
            "git",
            "-C",
            str(root),
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":(exclude)docs/benchmarks.md",
            ":(exclude)bench/results",
        ]
    )
    if changed != "not available":
        return f"{commit}, with uncommitted changes to tracked files"
    return commit


def _first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    if result.returncode != 0 or not result.stdout:
        return "not available"
    return result.stdout.splitlines()[0].strip()

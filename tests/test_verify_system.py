"""Tests of the system checks: platform, Python, disk, memory and cgroup limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codemate_setup.verify.model import CheckStatus
from codemate_setup.verify.system import (
    CgroupMemory,
    DiskUsage,
    check_disk,
    check_memory,
    check_platform,
    check_python,
    effective_available_memory,
    existing_ancestor,
    format_bytes,
    measure_disks,
    read_cgroup_memory,
)

GIB = 1024**3


@pytest.mark.parametrize(
    ("system", "machine", "status"),
    [
        ("Linux", "x86_64", CheckStatus.OK),
        ("Windows", "AMD64", CheckStatus.OK),
        ("Darwin", "arm64", CheckStatus.OK),
        ("Linux", "riscv64", CheckStatus.WARN),
        ("FreeBSD", "amd64", CheckStatus.WARN),
    ],
    ids=["linux", "windows", "macos", "unknown-arch", "unknown-os"],
)
def test_platform_check(system: str, machine: str, status: CheckStatus) -> None:
    assert check_platform(system, machine).status is status


def test_python_check_meets_requirement() -> None:
    result = check_python("3.11.7", ">=3.10", "/usr/bin/python3")

    assert result.status is CheckStatus.OK
    assert result.value == "Python 3.11.7 (/usr/bin/python3) meets >=3.10"


def test_python_check_too_old_is_critical() -> None:
    result = check_python("3.9.18", ">=3.10", "/usr/bin/python3.9")

    assert result.status is CheckStatus.FAIL
    assert result.value == "Python 3.9.18 (/usr/bin/python3.9) does not meet >=3.10"
    assert "--python PATH" in result.action


def test_python_check_invalid_requirement_warns() -> None:
    result = check_python("3.11.7", ">=three", "python")

    assert result.status is CheckStatus.WARN
    assert "cannot compare Python 3.11.7 with '>=three'" in result.value


def test_existing_ancestor_of_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "yet" / "there"

    assert existing_ancestor(missing) == tmp_path


def test_disk_measured_for_missing_home(tmp_path: Path) -> None:
    home = tmp_path / "new-home"

    usages = measure_disks([home, home / "app"])

    assert len(usages) == 1
    assert usages[0].folders == (home, home / "app")
    assert usages[0].measured_at == tmp_path
    assert usages[0].free_bytes > 0


def test_disk_below_threshold_warns_with_numbers(tmp_path: Path) -> None:
    usage = DiskUsage((tmp_path,), tmp_path, 512 * 1024**2)

    result = check_disk(usage, 2 * GIB, "system.disk")

    assert result.status is CheckStatus.WARN
    assert "512.0 MiB free" in result.value
    assert "(threshold 2.0 GiB)" in result.value
    assert result.detail["free_bytes"] == 512 * 1024**2


def test_disk_above_threshold_is_ok(tmp_path: Path) -> None:
    usage = DiskUsage((tmp_path,), tmp_path, 3 * GIB)

    assert check_disk(usage, 2 * GIB, "system.disk").status is CheckStatus.OK


def test_memory_below_threshold_warns() -> None:
    result = check_memory(GIB, 4 * GIB, limited=True)

    assert result.status is CheckStatus.WARN
    assert result.value == (
        "1.0 GiB available within the container's memory limit (threshold 4.0 GiB)"
    )


def test_effective_memory_uses_container_limit() -> None:
    cgroup = CgroupMemory(limit=2 * GIB, usage=GIB // 2)

    available = effective_available_memory(16 * GIB, 32 * GIB, cgroup)

    assert available == 2 * GIB - GIB // 2


def test_effective_memory_ignores_limit_above_host() -> None:
    cgroup = CgroupMemory(limit=64 * GIB, usage=0)

    assert effective_available_memory(16 * GIB, 32 * GIB, cgroup) == 16 * GIB


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cgroup_v2_limit_of_nested_group(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "app.slice/memory.max": "max\n",
            "app.slice/svc/memory.max": "1073741824\n",
            "app.slice/svc/memory.current": "734003200\n",
            "app.slice/svc/memory.stat": "anon 1\ninactive_file 209715200\n",
        },
    )
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/app.slice/svc\n")

    memory = read_cgroup_memory(tmp_path, proc)

    assert memory == CgroupMemory(limit=1073741824, usage=734003200 - 209715200)


def test_cgroup_v2_parent_limit_applies(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "outer/memory.max": "536870912\n",
            "outer/memory.current": "0\n",
            "outer/inner/memory.max": "max\n",
        },
    )
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/outer/inner\n")

    memory = read_cgroup_memory(tmp_path, proc)

    assert memory is not None
    assert memory.limit == 536870912


def test_cgroup_v1_limit(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "memory/memory.limit_in_bytes": "268435456\n",
            "memory/memory.usage_in_bytes": "1048576\n",
        },
    )
    proc = tmp_path / "proc-cgroup"
    proc.write_text("5:memory:/\n3:cpu,cpuacct:/\n")

    memory = read_cgroup_memory(tmp_path, proc)

    assert memory == CgroupMemory(limit=268435456, usage=1048576)


def test_cgroup_without_limit(tmp_path: Path) -> None:
    write_files(tmp_path, {"memory.max": "max\n"})
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/\n")

    assert read_cgroup_memory(tmp_path, proc) is None


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * GIB, "5.0 GiB")],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


@pytest.mark.skipif(os.name != "posix", reason="cgroups exist only on Linux")
def test_cgroup_reader_runs_on_this_machine() -> None:
    memory = read_cgroup_memory()

    assert memory is None or memory.limit > 0

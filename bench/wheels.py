"""Tiny pure-Python wheels, so the package benchmark needs no package index."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return f"sha256={encoded}"


def build_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """Write a wheel of one module ``name`` (a valid import name) into ``folder``.

    Args:
        folder: Where the wheel goes.
        name: Distribution and module name, such as ``bench_pkg_01``.
        version: Its version.
        requires: ``Requires-Dist`` lines.

    Returns:
        The wheel's path.
    """
    dist_info = f"{name}-{version}.dist-info"
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        *(f"Requires-Dist: {line}" for line in requires),
    ]
    files = {
        f"{name}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        f"{dist_info}/METADATA": ("\n".join(metadata) + "\n").encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: codemate-bench\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [
        f"{path},{_record_hash(data)},{len(data)}" for path, data in files.items()
    ]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()

    target = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return target


def build_wheelhouse(folder: Path, count: int) -> list[str]:
    """Build ``count`` wheels, each after the first depending on its predecessor.

    Returns:
        Requirement lines that pin every wheel, such as ``bench_pkg_01==1.0``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        name = f"bench_pkg_{index:02d}"
        requires = [f"bench_pkg_{index - 1:02d}>=1.0"] if index else []
        build_wheel(folder, name, "1.0", requires)
        lines.append(f"{name}==1.0")
    return lines

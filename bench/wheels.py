"""Tiny pure-Python wheels, so the package benchmark and tests need no package index.

The tests import :func:`build_wheel` from here. This module must not import
from ``tests``, because the benchmarks run without that folder on the path.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WheelSpec:
    """One wheel to build: a distribution with one module and its dependencies."""

    name: str
    version: str
    requires: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        """The import name, such as ``cm_alpha``."""
        return re.sub(r"[-.]+", "_", self.name).lower()

    @property
    def filename(self) -> str:
        """The wheel file name (PEP 427), such as ``cm_alpha-1.0-py3-none-any.whl``."""
        return f"{self.module}-{self.version}-py3-none-any.whl"


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def build_wheel(spec: WheelSpec, folder: Path, *, generator: str) -> Path:
    """Write one wheel into ``folder`` and return its path.

    ``generator`` is the ``Generator`` line of the wheel's ``WHEEL`` file, which
    names the tool that built it. Each extra written as ``extra == "name"`` in
    a ``requires`` marker gets a ``Provides-Extra`` line.
    """
    dist_info = f"{spec.module}-{spec.version}.dist-info"
    extras = sorted(
        {
            m.group(1)
            for r in spec.requires
            for m in [re.search(r'extra == "(\w+)"', r)]
            if m
        }
    )
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {spec.name}",
        f"Version: {spec.version}",
        *(f"Provides-Extra: {extra}" for extra in extras),
        *(f"Requires-Dist: {line}" for line in spec.requires),
    ]
    files = {
        f"{spec.module}/__init__.py": f'__version__ = "{spec.version}"\n'.encode(),
        f"{dist_info}/METADATA": ("\n".join(metadata) + "\n").encode(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: {generator}\n"
            "Root-Is-Purelib: true\nTag: py3-none-any\n"
        ).encode(),
    }
    record_lines = [
        f"{path},{_record_hash(data)},{len(data)}" for path, data in files.items()
    ]
    record_lines.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()

    target = folder / spec.filename
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
        requires = (f"bench_pkg_{index - 1:02d}>=1.0",) if index else ()
        build_wheel(
            WheelSpec(name, "1.0", requires), folder, generator="codemate-bench"
        )
        lines.append(f"{name}==1.0")
    return lines

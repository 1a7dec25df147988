"""Tiny pure-Python wheels built at test time, so package tests need no network."""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The distributions every package test can install, as (name, version, requires).
STANDARD_WHEELS = (
    ("cm-alpha", "1.0", ()),
    ("cm-alpha", "2.0", ()),
    ("cm-beta", "1.0", ("cm-alpha>=1",)),
    ("cm-gamma", "1.0", ('cm-alpha>=2; extra == "fast"',)),
)


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


def build_wheel(spec: WheelSpec, folder: Path) -> Path:
    """Write one wheel into ``folder`` and return its path."""
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
            b"Wheel-Version: 1.0\nGenerator: codemate-tests\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
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


def build_wheelhouse(
    folder: Path, specs: Iterable[tuple[str, str, tuple[str, ...]]] = STANDARD_WHEELS
) -> Path:
    """Build every wheel of ``specs`` into ``folder`` and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, version, requires in specs:
        build_wheel(WheelSpec(name, version, tuple(requires)), folder)
    return folder

"""Tiny pure-Python wheels built at test time, so package tests need no network."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bench.wheels import WheelSpec, build_wheel

# The distributions every package test can install, as (name, version, requires).
STANDARD_WHEELS = (
    ("cm-alpha", "1.0", ()),
    ("cm-alpha", "2.0", ()),
    ("cm-beta", "1.0", ("cm-alpha>=1",)),
    ("cm-gamma", "1.0", ('cm-alpha>=2; extra == "fast"',)),
)


def build_wheelhouse(
    folder: Path, specs: Iterable[tuple[str, str, tuple[str, ...]]] = STANDARD_WHEELS
) -> Path:
    """Build every wheel of ``specs`` into ``folder`` and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, version, requires in specs:
        spec = WheelSpec(name, version, tuple(requires))
        build_wheel(spec, folder, generator="codemate-tests")
    return folder

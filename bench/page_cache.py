"""Probe of the speed of large writes into this machine's page cache.

The download benchmark's figures depend on it. On the virtual machine of the
recorded runs, ``dd`` in 1 MiB pieces was several times slower right after a
file written in 16 KiB pieces was deleted than right after one written in
1 MiB pieces. The probe measures both cases in the same run as the benchmark.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.processes import run_measured

# Bytes per write of curl (at most) and of our download (about).
SMALL_PIECE = 16 * 1024
LARGE_PIECE = 1024 * 1024


def write_after(folder: Path, size: int, previous_piece: int, piece: int) -> float:
    """Return the seconds to write ``size`` bytes in pieces of ``piece`` bytes.

    A file of the same size, written in pieces of ``previous_piece`` bytes, is
    deleted just before, as one run's output is deleted before the next run.
    """
    previous = folder / "page-cache-previous.bin"
    target = folder / "page-cache.bin"
    _write(previous, size, previous_piece)
    os.sync()
    previous.unlink()
    os.sync()
    try:
        return _write(target, size, piece)
    finally:
        target.unlink(missing_ok=True)


def _write(path: Path, size: int, piece: int) -> float:
    count = max(1, size // piece)
    command = ["dd", "if=/dev/zero", f"of={path}", f"bs={piece}", f"count={count}"]
    return run_measured([*command, "status=none"]).seconds

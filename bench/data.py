"""Generated benchmark data: random file contents and file trees."""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.model import BenchContext
from codemate_setup.publish import publish_release

MIB = 1024 * 1024

# Files per folder in generated trees, like a source tree's package folders.
FILES_PER_FOLDER = 100


def write_random_file(path: Path, size: int, seed: int = 0) -> None:
    """Write ``size`` pseudo-random bytes to ``path``, creating its folder.

    Random bytes keep compression and deduplication from flattering a figure.
    """
    generator = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            chunk = min(MIB, remaining)
            handle.write(generator.randbytes(chunk))
            remaining -= chunk


def tree_paths(count: int) -> list[str]:
    """Return ``count`` release paths spread over folders of 100 files each."""
    return [
        f"pkg{index // FILES_PER_FOLDER:04d}/module{index:06d}.py"
        for index in range(count)
    ]


def write_tree(root: Path, count: int, file_size: int, seed: int = 0) -> list[str]:
    """Write a tree of ``count`` random files of ``file_size`` bytes each.

    Returns:
        The release paths written, relative to ``root``.
    """
    generator = random.Random(seed)
    paths = tree_paths(count)
    folders = {path.rsplit("/", 1)[0] for path in paths}
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for path in paths:
        (root / path).write_bytes(generator.randbytes(file_size))
    return paths


@dataclass(frozen=True)
class LargeRelease:
    """A published release of one large file, shared by several benchmarks."""

    releases_dir: Path
    version: str
    path: str
    size: int


LARGE_FILE_BYTES = 1024 * MIB
QUICK_LARGE_FILE_BYTES = 8 * MIB
LARGE_FILE_PATH = "models/weights.bin"


def large_release(ctx: BenchContext) -> LargeRelease:
    """Publish a release of one 1 GiB file (8 MiB with ``--quick``), once per run."""
    size = QUICK_LARGE_FILE_BYTES if ctx.quick else LARGE_FILE_BYTES
    releases = ctx.shared / "large-releases"
    release = LargeRelease(releases, "1.0.0", LARGE_FILE_PATH, size)
    if (releases / release.version).is_dir():
        return release

    source = ctx.shared / "large-source"
    write_random_file(source / LARGE_FILE_PATH, size)
    publish(source, release.version, releases)
    shutil.rmtree(source)
    return release


def publish(source: Path, version: str, releases_dir: Path) -> None:
    """Publish ``source`` as ``version``, without fsyncs: the data is thrown away."""
    publish_release(source, version, releases_dir, durable=False)

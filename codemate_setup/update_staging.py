"""Steps 5 and 6 of an update: download files into staging, then verify them.

Step 5 downloads the files that the plan places, and the release's
requirements file when it is not one of the release's files, into the
staging folder of the target version. Step 6 checks that each staged file is
a readable regular file with the size and sha256 that the manifest declares,
where it declares them. Neither step changes the install folder.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from codemate_setup.client import MiddlewareClient
from codemate_setup.download import (
    DownloadItem,
    DownloadProgress,
    DownloadStats,
    download_all,
)
from codemate_setup.filestore import store_path, verify_staged_file
from codemate_setup.plan import Plan
from codemate_setup.steps import StepReporter
from codemate_setup.target import TargetFile, TargetState

# Threads that hash staged files; hashlib releases the GIL on large reads.
VERIFY_WORKERS = 4

# Files checked by their recorded hash between two progress reports of step 6.
VERIFY_REPORT_EVERY = 100


@dataclass
class StagedFiles:
    """The files that step 5 placed in the staging folder.

    Attributes:
        paths: The staged file of each release path.
        expected: The planned download of each release path, with its
            declared hash and size. A requirements file that is not one of
            the release's files has no entry.
        stats: The download's counts. ``stats.verified`` contains the hashes
            computed while downloading, by staged file.
    """

    paths: dict[str, Path]
    expected: dict[str, TargetFile]
    stats: DownloadStats


def download_to_staging(
    client: MiddlewareClient,
    staging: Path,
    state: TargetState,
    plan: Plan,
    reporter: StepReporter,
    cancel: threading.Event,
) -> StagedFiles:
    """Download the plan's files into ``staging``, reporting progress.

    Release files go to ``staging/files``. A requirements file that is not
    one of the release's files goes to ``staging/requirements.txt``.
    """
    files_dir = staging / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    expected = {target.path: target for target in plan.downloads}

    items = [
        DownloadItem(
            version=target.version,
            path=target.path,
            dest=store_path(files_dir, target.path),
            sha256=target.sha256,
            size=target.size,
        )
        for target in plan.downloads
    ]
    requirements = state.requirements
    if requirements is not None and requirements not in state.files:
        items.append(
            DownloadItem(
                version=state.version,
                path=requirements,
                dest=staging / "requirements.txt",
                sha256=None,
                size=None,
            )
        )

    def report(progress: DownloadProgress) -> None:
        report_download(reporter, progress)

    stats = download_all(client, items, on_progress=report, cancel=cancel)
    paths = {item.path: item.dest for item in items}
    return StagedFiles(paths=paths, expected=expected, stats=stats)


def report_download(reporter: StepReporter, progress: DownloadProgress) -> None:
    """Report download progress as the current step's fraction and detail."""
    if progress.bytes_total:
        fraction = progress.bytes_done / progress.bytes_total
    elif progress.files_total:
        fraction = progress.files_done / progress.files_total
    else:
        fraction = 1.0
    reporter.progress(
        fraction,
        {
            "bytes_done": progress.bytes_done,
            "bytes_total": progress.bytes_total,
            "bytes_per_second": round(progress.bytes_per_second),
            "eta_seconds": progress.eta_seconds,
            "items_done": progress.files_done,
            "items_total": progress.files_total,
        },
    )


def verify_staged(
    staged: StagedFiles, reporter: StepReporter
) -> dict[str, tuple[str, int]]:
    """Check every staged file and return its sha256 and size by release path.

    Raises:
        IntegrityError: If a staged file is missing or does not match.
    """
    paths = staged.paths
    verified = staged.stats.verified
    total = len(paths)
    hashes: dict[str, tuple[str, int]] = {}

    def check(path: str) -> tuple[str, tuple[str, int]]:
        target = staged.expected.get(path)
        return path, verify_staged_file(
            path,
            paths[path],
            target.sha256 if target is not None else None,
            target.size if target is not None else None,
            verified.get(paths[path]),
        )

    # A file whose hash the download recorded needs one lstat, which is
    # cheaper than handing it to a thread; the others are read and hashed.
    recorded = [path for path in paths if paths[path] in verified]
    to_hash = [path for path in paths if paths[path] not in verified]
    done = 0
    for path in recorded:
        hashes[path] = check(path)[1]
        done += 1
        if done % VERIFY_REPORT_EVERY == 0:
            reporter.items(done, total)
    with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
        for path, digest in pool.map(check, to_hash):
            hashes[path] = digest
            done += 1
            reporter.items(done, total)
    reporter.items(done, total)
    return hashes

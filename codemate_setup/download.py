"""Parallel, resumable, verified download of release files into staging.

:func:`download_all` fetches a set of release files over one pooled session,
several at once. Each file streams in large chunks into ``DEST.part`` and is
never written past its declared size. A file of one chunk or more is hashed
in a second thread while it streams (:mod:`codemate_setup.download_hash`).
After an interruption it resumes with ``Range``, also in a later run when a
sidecar proves that the part file contains the same expected content.
Transient failures are retried with exponential backoff. Once its size and
sha256 match, the part file is renamed to ``DEST``.

Small files with a declared size and sha256 take the lean path of
:mod:`codemate_setup.fetch_small`: one request over the thread's own
keep-alive connection, the body verified in memory and then written straight
to ``DEST``. Any other outcome continues on the regular path above.

NOTE: staged files are not fsynced, and the installer fsyncs the journal and
the folders it renames in, not file contents. A kill -9 loses nothing, but a
power cut right after an update may leave installed files empty on file
systems that do not flush data before a rename.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from packaging.version import Version

from codemate_setup.client import MiddlewareClient
from codemate_setup.download_file import FileDownload
from codemate_setup.download_progress import DownloadProgress, ProgressMeter
from codemate_setup.download_run import (
    DownloadRun,
    DownloadStopped,
    PlannedItem,
    plan_item,
)
from codemate_setup.errors import (
    InstallError,
    ManifestError,
    SetupCancelledError,
)
from codemate_setup.fetch_small import SMALL_FILE_WORKERS, SmallFileFetcher
from codemate_setup.filestore import VerifiedFile
from codemate_setup.partial import PART_SUFFIX, SIDECAR_SUFFIX
from codemate_setup.small_transport import SmallFileTransport

__all__ = [
    "DownloadItem",
    "DownloadProgress",
    "DownloadStats",
    "check_disk_space",
    "download_all",
]

logger = logging.getLogger(__name__)

# How often the coordinating thread checks the cancel event, in seconds.
CANCEL_POLL_SECONDS = 0.05

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")

TaskT = TypeVar("TaskT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class DownloadItem:
    """One release file to stage.

    Attributes:
        version: The release the file belongs to.
        path: The release path, already validated by the caller.
        dest: The staged file, written atomically through ``dest.part``.
        sha256: The expected hex digest, or None for legacy manifests.
        size: The expected length in bytes, or None when the manifest has
            none.
    """

    version: Version
    path: str
    dest: Path
    sha256: str | None
    size: int | None


@dataclass
class DownloadStats:
    """Counts of the work done by one :func:`download_all` call.

    Attributes:
        files_downloaded: Files fetched (fully or by resuming).
        files_reused: Files already staged with the expected hash.
        bytes_downloaded: Bytes received over the network, including bytes
            received again after a retry from scratch.
        bytes_reused: Bytes of reused files and of resumed part files.
        retries: Retries of any kind (transient failure, mismatch restart).
        resumes: Responses with a matching partial body (206) to a range request.
        bytes_spliced: Bytes of ``bytes_downloaded`` that the kernel moved from
            the socket into the file (Linux, plain HTTP; see ``download_body``).
        seconds: Wall-clock duration of the call.
        verified: Hash of each staged file as checked by this call, by
            destination, so a later check of an unchanged file needs no read.
    """

    files_downloaded: int = 0
    files_reused: int = 0
    bytes_downloaded: int = 0
    bytes_reused: int = 0
    retries: int = 0
    resumes: int = 0
    bytes_spliced: int = 0
    seconds: float = 0.0
    verified: dict[Path, VerifiedFile] = field(default_factory=dict, repr=False)


def download_all(
    client: MiddlewareClient,
    items: Sequence[DownloadItem],
    *,
    workers: int | None = None,
    on_progress: Callable[[DownloadProgress], None] | None = None,
    cancel: threading.Event | None = None,
    disk_free: Callable[[Path], int] | None = None,
) -> DownloadStats:
    """Download every item into its destination, several files at once.

    Args:
        client: The middleware client whose session carries every request.
        items: The files to stage; destinations must be distinct.
        workers: Parallel connections; defaults to
            ``Limits.download_workers`` and is capped by the client's pool.
        on_progress: Called from any thread at most about 10 times per
            second, and once more at the end.
        cancel: When set, every download stops within about a second and
            part files stay for the next run.
        disk_free: Returns the free bytes of the disk holding a folder;
            defaults to :func:`shutil.disk_usage`.

    Returns:
        Counts of what was downloaded, reused, retried and resumed.

    Raises:
        ManifestError: If an item has an invalid sha256 or size, or two
            items' staging files collide.
        InstallError: If the disk lacks space for the files still to
            download, or the staging folder cannot be written.
        IntegrityError: If a file's size or sha256 is still wrong after one
            restart from scratch.
        MiddlewareError: If the middleware refuses a file or keeps failing.
        SetupCancelledError: If ``cancel`` was set.
        ValueError: If ``workers`` is below 1 or two items share a ``dest``.
    """
    started = time.monotonic()
    items = list(items)
    _validate_items(items, client.limits.max_file_bytes)
    worker_count = _worker_count(workers, client, len(items))

    meter = ProgressMeter(
        bytes_total=_total_size(items),
        files_total=len(items),
        callback=on_progress,
    )
    run = DownloadRun(client, meter, cancel)
    if run.stopped():
        raise _cancelled(run, len(items))

    plans = _plan_all(run, items, worker_count)
    _count_reused(run, plans)

    pending = [plan for plan in plans if not plan.reused]
    check_disk_space(pending, client.limits.disk_reserve_bytes, disk_free)
    _download_pending(run, pending, worker_count, reused=len(plans) - len(pending))
    meter.finish()

    stats = DownloadStats(
        seconds=time.monotonic() - started, verified=dict(run.verified), **run.counts
    )
    logger.info("download finished: %s", stats)
    return stats


def _plan_all(
    run: DownloadRun, items: list[DownloadItem], workers: int
) -> list[PlannedItem]:
    """Plan every item, reading each staging folder's names once.

    An item whose destination and part file are both absent has nothing to
    reuse or resume, so only the others are examined one by one.
    """
    plans: list[PlannedItem | None] = [None] * len(items)
    listings: dict[Path, frozenset[str] | None] = {}
    examined = []
    for index, item in enumerate(items):
        dest = item.dest
        folder = dest.parent
        names = listings.get(folder, ())
        if names == ():
            names = listings[folder] = _folder_names(folder)
        name = dest.name
        if names is not None and name not in names and name + PART_SUFFIX not in names:
            plans[index] = PlannedItem(item)
        else:
            examined.append(index)

    found = _run_parallel(
        run,
        [items[index] for index in examined],
        lambda item: plan_item(run, item),
        workers,
    )
    for index, plan in zip(examined, found, strict=True):
        plans[index] = plan
    return plans  # type: ignore[return-value]


def _folder_names(folder: Path) -> frozenset[str] | None:
    """Return the names in ``folder``, empty if it is missing, None if unreadable."""
    try:
        return frozenset(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    except OSError as e:
        logger.debug("cannot list %s, examining its files one by one: %s", folder, e)
        return None


def _download_pending(
    run: DownloadRun, pending: list[PlannedItem], workers: int, *, reused: int
) -> None:
    """Download the planned items: small ones on the lean path, others in full."""
    transport = SmallFileTransport.for_client(run.client)
    fetcher = SmallFileFetcher(run, transport) if transport is not None else None
    if fetcher is not None and all(fetcher.accepts(plan) for plan in pending):
        workers = min(workers, SMALL_FILE_WORKERS)
    logger.info(
        "downloading %d files (%s bytes) with %d connections, %d already staged",
        len(pending),
        sum(plan.bytes_to_download for plan in pending),
        min(workers, max(len(pending), 1)),
        reused,
    )

    if transport is None or fetcher is None:
        _run_parallel(
            run, pending, lambda plan: FileDownload(run, plan).execute(), workers
        )
        return

    run.add_interruptible(transport)

    def download(plan: PlannedItem) -> None:
        if fetcher.accepts(plan):
            fetcher.fetch(plan)
        else:
            FileDownload(run, plan).execute()

    try:
        _run_parallel(run, pending, download, workers)
    finally:
        transport.close()
        fetcher.log_summary()


def _validate_items(items: list[DownloadItem], max_file_bytes: int) -> None:
    """Reject items whose expected content or staging files are unusable."""
    # Keyed by the path as text, in the case the file system compares: this
    # is the same test as Path equality, much cheaper for thousands of items.
    staged: dict[str, DownloadItem] = {}
    for item in items:
        _validate_expected(item, max_file_bytes)
        key = os.path.normcase(item.dest)
        if key in staged:
            raise ValueError(
                f"download destinations must be distinct, but {item.dest} is the "
                f"destination of {staged[key].path} and {item.path}"
            )
        staged[key] = item

    for key, item in staged.items():
        for suffix in (PART_SUFFIX, SIDECAR_SUFFIX):
            other = staged.get(key + os.path.normcase(suffix))
            if other is not None:
                raise ManifestError(
                    f"release files {item.path} and {other.path} cannot be staged "
                    f"together: {other.path} has the name of the partial download "
                    f"of {item.path}"
                )


def _validate_expected(item: DownloadItem, max_file_bytes: int) -> None:
    sha256 = item.sha256
    if sha256 is not None and not (
        isinstance(sha256, str) and _SHA256_HEX.fullmatch(sha256)
    ):
        raise ManifestError(
            f"invalid sha256 {sha256!r} for {item.path}: expected 64 hexadecimal digits"
        )

    size = item.size
    if size is not None and (
        not isinstance(size, int) or isinstance(size, bool) or size < 0
    ):
        raise ManifestError(
            f"invalid size {size!r} for {item.path}: expected a whole number of "
            "bytes, 0 or more"
        )
    if size is not None and size > max_file_bytes:
        raise ManifestError(
            f"file {item.path} of release {item.version} must be at most "
            f"{max_file_bytes} bytes, but the manifest declares {size}"
        )


def _worker_count(workers: int | None, client: MiddlewareClient, items: int) -> int:
    count = client.limits.download_workers if workers is None else workers
    if count < 1:
        raise ValueError(f"workers must be 1 or more, got {count}")

    # More threads than pooled connections would open and discard a new
    # connection for every file beyond the pool.
    capped = min(count, client.pool_size, max(items, 1))
    if capped != count:
        logger.debug("using %d download threads instead of %d", capped, count)
    return capped


def _total_size(items: list[DownloadItem]) -> int | None:
    if any(item.size is None for item in items):
        return None
    return sum(item.size or 0 for item in items)


def _count_reused(run: DownloadRun, plans: list[PlannedItem]) -> None:
    for plan in plans:
        if not plan.reused:
            continue
        size = plan.item.size
        if size is None:
            size = plan.item.dest.stat().st_size
        run.count("files_reused")
        run.count("bytes_reused", size)
        run.meter.add_bytes(size, transferred=False)
        run.meter.add_file()


def check_disk_space(
    plans: Sequence[PlannedItem],
    reserve_bytes: int,
    disk_free: Callable[[Path], int] | None = None,
) -> None:
    """Check that the files still to download fit on their disks.

    Files are grouped by the disk of their staging folder, and each disk must
    have the bytes still to download plus ``reserve_bytes`` free.

    NOTE: files without a declared size count as 0 bytes here, so a legacy
    manifest can still fill the disk. The write then fails with InstallError.

    Args:
        plans: Items with the bytes each still needs.
        reserve_bytes: Free space to leave on each disk.
        disk_free: Returns the free bytes for a folder; defaults to
            :func:`shutil.disk_usage`.

    Raises:
        InstallError: Naming the folder, the bytes needed and the bytes free.
    """
    free_of = disk_free or _free_bytes
    needed: dict[int, tuple[Path, int]] = {}
    devices: dict[str, tuple[Path, int]] = {}

    for plan in plans:
        count = plan.bytes_to_download
        if count == 0:
            continue
        parent = os.path.dirname(plan.item.dest)
        if parent not in devices:
            folder = _existing_folder(Path(parent))
            devices[parent] = (folder, os.stat(folder).st_dev)
        folder, device = devices[parent]
        previous = needed.get(device, (folder, 0))
        needed[device] = (previous[0], previous[1] + count)

    for folder, count in needed.values():
        free = free_of(folder)
        logger.debug("disk of %s: %d bytes needed, %d free", folder, count, free)
        if count + reserve_bytes > free:
            raise InstallError(
                f"not enough free disk space in {folder}: the download needs "
                f"{count + reserve_bytes} bytes ({count} to download plus a "
                f"reserve of {reserve_bytes}), but only {free} bytes are free; "
                "free up disk space and run the update again"
            )


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _existing_folder(folder: Path) -> Path:
    """Return ``folder`` or its nearest ancestor that exists."""
    current = folder.absolute()
    while not current.exists() and current.parent != current:
        current = current.parent
    return current


def _run_parallel(
    run: DownloadRun,
    tasks: Sequence[TaskT],
    function: Callable[[TaskT], ResultT],
    workers: int,
) -> list[ResultT]:
    """Apply ``function`` to every task on ``workers`` threads, in order.

    The first exception stops every thread and is raised here once they have
    ended. A set cancel event raises :class:`SetupCancelledError` instead.
    """
    results: list[ResultT] = [None] * len(tasks)  # type: ignore[list-item]
    next_index = iter(range(len(tasks)))
    lock = threading.Lock()

    def work() -> None:
        while not run.stopped():
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            try:
                results[index] = function(tasks[index])
            except DownloadStopped:
                return
            except BaseException as e:  # noqa: BLE001 - re-raised by the caller
                run.fail(e)
                return

    threads = min(workers, len(tasks))
    if threads:
        with ThreadPoolExecutor(threads, thread_name_prefix="download") as pool:
            futures = [pool.submit(work) for _ in range(threads)]
            _wait_watching_cancel(run, futures)

    if run.cancel is not None and run.cancel.is_set():
        raise _cancelled(run, len(tasks))
    if run.first_error is not None:
        raise run.first_error
    return results


def _wait_watching_cancel(run: DownloadRun, futures: list) -> None:
    """Wait for the threads, stopping them as soon as ``cancel`` is set."""
    try:
        pending = futures
        while pending:
            _, pending = wait(pending, timeout=CANCEL_POLL_SECONDS)
            cancelled = run.cancel is not None and run.cancel.is_set()
            if pending and cancelled and not run.stop.is_set():
                logger.info("download cancelled, stopping every transfer")
                run.halt()
    except BaseException:
        # On KeyboardInterrupt in this thread, stop the workers so that the
        # pool's shutdown does not wait for whole downloads.
        run.halt()
        raise


def _cancelled(run: DownloadRun, total: int) -> SetupCancelledError:
    done = run.counts["files_downloaded"] + run.counts["files_reused"]
    return SetupCancelledError(
        f"download cancelled with {done} of {total} files staged; partial files "
        "are kept and the next run resumes them"
    )

"""The update workflow: ten reported steps from the installed version to a target.

Nothing in the install folder changes before step 7. Steps 7 to 9 run inside
a :class:`~codemate_setup.transaction.Transaction`, so a failure or a cancel
there rolls every move back, and a crash is rolled back (or, once committed,
completed) by the next run's step 1.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import Version

from codemate_setup.backups import BackupRecord, stored_from_states
from codemate_setup.client import MiddlewareClient
from codemate_setup.config import RunOptions
from codemate_setup.download import DownloadItem, DownloadProgress, download_all
from codemate_setup.errors import SetupCancelledError, UsageError
from codemate_setup.filestore import VerifiedFile, store_path, verify_staged_file
from codemate_setup.homefiles import (
    prepare_folders,
    read_installed_version,
    recover_and_report,
)
from codemate_setup.journal import TransactionKind
from codemate_setup.listing import (
    InstalledFile,
    InstalledListing,
    InstallView,
    load_listing,
    save_listing,
)
from codemate_setup.plan import (
    ChangeKind,
    OpKind,
    Plan,
    TargetFile,
    TargetState,
    build_plan,
    classify_change,
)
from codemate_setup.resolve import (
    ResolvedTarget,
    listing_from_manifest,
    release_versions,
    require_published,
    resolve_target,
)
from codemate_setup.state import Phase, SetupTracker
from codemate_setup.steps import StepListener, StepReporter, run_reported_phase
from codemate_setup.transaction import Transaction, install_path
from codemate_setup.versions import parse_version

logger = logging.getLogger(__name__)

PHASE = Phase.CODEBASE_UPDATE

UPDATE_STEPS = (
    "Initializing installation process",
    "Retrieving system information from remote server",
    "Fetching installation manifest",
    "Comparing installed files",
    "Downloading application files",
    "Verifying file integrity",
    "Backing up current installation",
    "Applying update",
    "Recording installed version",
    "Finalizing installation",
)

# Threads that hash staged files; hashlib releases the GIL on large reads.
VERIFY_WORKERS = 4

# Files checked by their recorded hash between two progress reports of step 6.
VERIFY_REPORT_EVERY = 100

_HAS_POSIX_MODES = os.name != "nt"

# Asks a yes/no question. It returns None when no terminal is attached to answer.
Confirm = Callable[[str], "bool | None"]


@dataclass
class UpdateResult:
    """The outcome of an update or rollback, as printed by ``update.py --json``."""

    action: str
    from_version: str | None
    to_version: str
    message: str = ""
    files_downloaded: int = 0
    files_reused: int = 0
    bytes_downloaded: int = 0
    files_placed: int = 0
    files_removed: int = 0
    files_kept: int = 0
    files_rehashed: int = 0
    backup: str | None = None
    recovery: dict[str, Any] | None = None
    fallbacks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_document(self) -> dict[str, Any]:
        """Return the JSON form of the result."""
        return asdict(self)


def confirm_on_terminal(question: str) -> bool | None:
    """Ask a yes/no question on the terminal.

    Returns:
        True for yes, False for no, or None when standard input is not a
        terminal.
    """
    if not (sys.stdin and sys.stdin.isatty()):
        return None
    # The question goes to stderr so that --json output stays one document.
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def run_update(
    options: RunOptions,
    version: Version | str,
    *,
    tracker: SetupTracker,
    own_setup: bool,
    yes: bool = False,
    cancel: threading.Event | None = None,
    allow_downgrade: bool = False,
    confirm: Confirm = confirm_on_terminal,
    on_step: StepListener | None = None,
) -> UpdateResult:
    """Install or update the codebase to ``version`` from the middleware.

    Args:
        options: Home layout, middleware URL, repo and limits.
        version: The target version.
        tracker: Receives the ``codebase_update`` phase's steps and progress.
        own_setup: Start and finish a setup of its own in the state file;
            False when an orchestrator owns the setup.
        yes: Confirm a major update without asking.
        cancel: When set, the update stops and rolls back what it changed.
        allow_downgrade: Install a version older than the installed one.
        confirm: Asks whether to go ahead with a major update.
        on_step: Called when each step starts.

    Returns:
        What the update did.

    Raises:
        UsageError: For an unknown or older version, or a major update that
            was not confirmed.
        ManifestError: For an invalid manifest; nothing was changed.
        MiddlewareError: If the middleware fails; nothing was changed.
        IntegrityError: If downloaded files do not match; nothing was changed.
        InstallError: If applying fails; the old version was restored.
        SetupCancelledError: If ``cancel`` was set; the old version is intact.
    """
    target = version if isinstance(version, Version) else parse_version(str(version))
    reporter = StepReporter(tracker, PHASE, UPDATE_STEPS, on_step)
    update = _Update(
        options,
        target,
        reporter,
        yes=yes,
        allow_downgrade=allow_downgrade,
        confirm=confirm,
        cancel=cancel or threading.Event(),
    )
    return run_reported_phase(reporter, own_setup, str(target), update.run)


class _Update:
    """One run of the update workflow, with a method per step."""

    def __init__(
        self,
        options: RunOptions,
        target: Version,
        reporter: StepReporter,
        *,
        yes: bool,
        allow_downgrade: bool,
        confirm: Confirm,
        cancel: threading.Event,
    ) -> None:
        self.options = options
        self.layout = options.layout
        self.limits = options.limits
        self.target = target
        self.reporter = reporter
        self.yes = yes
        self.allow_downgrade = allow_downgrade
        self.confirm = confirm
        self.cancel = cancel
        self.installed: Version | None = None
        self.listing: InstalledListing | None = None
        self.change = ChangeKind.INSTALL
        self.downloads: dict[str, TargetFile] = {}
        self.verified: dict[Path, VerifiedFile] = {}
        self.collector = _CollectorPause()
        self.result = UpdateResult(action="", from_version=None, to_version=str(target))

    def run(self) -> UpdateResult:
        """Run the ten steps and return the result."""
        try:
            return self._run_steps()
        finally:
            self.collector.end()

    def _run_steps(self) -> UpdateResult:
        step = self.reporter.step
        with self.collector.paused(), step(1):
            self._initialize()

        client = MiddlewareClient(
            self.options.middleware_url,
            repo=self.options.repo,
            limits=self.limits,
            allow_insecure_http=self.options.allow_insecure_http,
            cancel=self.cancel,
        )
        with client:
            with self.collector.paused():
                with step(2):
                    versions = self._retrieve_releases(client)
                with step(3):
                    resolved = self._fetch_manifests(client, versions)
                with step(4):
                    view, plan = self._compare(resolved.state)
            if plan.is_empty and self.change is ChangeKind.SAME:
                return self._finish_unchanged(view)
            with step(5):
                staged = self._download(client, resolved.state, plan)

        with step(6):
            hashes = self._verify(staged)
        self._install(resolved.state, plan, hashes, staged)
        self.result.warnings = list(self.reporter.warnings)
        return self.result

    # Step 1

    def _initialize(self) -> None:
        prepare_folders(self.layout)
        outcome = recover_and_report(
            self.layout, self.limits.keep_backups, self.reporter
        )
        if outcome is not None:
            self.result.recovery = outcome.to_document()

        self.installed = read_installed_version(self.layout)
        self.listing = load_listing(self.layout.installed_listing)
        self.result.from_version = str(self.installed) if self.installed else None
        self.change = classify_change(self.installed, self.target)
        logger.info(
            "installed %s, target %s: %s",
            self.installed,
            self.target,
            self.change.value,
        )

        if self.change is ChangeKind.DOWNGRADE and not self.allow_downgrade:
            raise UsageError(
                f"{self.target} is older than the installed {self.installed}; "
                f"restore it from the backups with update.py --rollback "
                f"{self.target}, or pass --allow-downgrade to install it from "
                "the middleware"
            )
        self._check_cancel()

    # Step 2

    def _retrieve_releases(self, client: MiddlewareClient) -> list[Version]:
        client.health()
        versions = release_versions(client.list_releases())
        require_published(versions, self.target, client.display_url)
        info = client.release_info(self.target)
        self.reporter.tracker.set_phase_info(
            PHASE,
            "release",
            {
                key: info.get(key)
                for key in ("version", "file_count", "total_bytes")
                if key in info
            },
            defer=True,
        )

        if self.change is ChangeKind.MAJOR_UPGRADE:
            self._confirm_major()
        self._check_cancel()
        return versions

    def _confirm_major(self) -> None:
        question = (
            f"Updating CodeMate from {self.installed} to {self.target} is a major "
            "update. Continue?"
        )
        if self.yes:
            logger.info("major update confirmed by --yes")
            return

        answer = self.confirm(question)
        if answer is None:
            raise UsageError(
                f"updating from {self.installed} to {self.target} is a major "
                "update and needs confirmation; pass --yes to confirm it"
            )
        if not answer:
            raise UsageError(
                f"the major update to {self.target} was declined; nothing changed"
            )

    # Step 3

    def _fetch_manifests(
        self, client: MiddlewareClient, versions: list[Version]
    ) -> ResolvedTarget:
        if self.listing is None and self.installed is not None:
            self._listing_from_release(client, versions)

        resolved = resolve_target(
            client.fetch_manifest,
            versions,
            self.target,
            self.installed,
            self.listing,
            self.limits,
        )
        if resolved.fallback is not None:
            self.reporter.tracker.record_fallback(PHASE, resolved.fallback)
            self.result.fallbacks.append(resolved.fallback)
        self._check_cancel()
        return resolved

    def _listing_from_release(
        self, client: MiddlewareClient, versions: list[Version]
    ) -> None:
        """Learn which files the installed version owns from its manifest.

        Without ``installed.json`` no file counts as owned, so files that the
        installed release has and the target drops would stay behind.
        """
        installed = self.installed
        if installed is None or installed not in versions:
            return
        listing = listing_from_manifest(
            client.fetch_manifest(installed), installed, self.limits
        )
        if listing is None:
            return

        self.listing = listing
        self.reporter.warn(
            f"{self.layout.installed_listing.name} is missing, so the files of "
            f"{installed} were taken from its manifest and are checked by hash"
        )

    # Step 4

    def _compare(self, state: TargetState) -> tuple[InstallView, Plan]:
        view = InstallView(self.layout.install_dir, self.listing)
        owned = self.listing.files if self.listing is not None else None
        plan = build_plan(state, owned, view, compare_modes=_HAS_POSIX_MODES)

        if state.entry_point and state.entry_point not in state.files:
            self.reporter.warn(
                f"the entry point {state.entry_point!r} of {self.target} is not "
                "one of its files"
            )

        self.result.files_rehashed = view.hashed
        self.result.files_kept = len(plan.kept)
        self.result.files_placed = plan.count(OpKind.PLACE)
        self.result.files_removed = sum(
            1
            for op in plan.ops
            if op.kind is OpKind.BACKUP and op.path not in state.files
        )
        self._check_cancel()
        return view, plan

    def _finish_unchanged(self, view: InstallView) -> UpdateResult:
        for number in range(5, len(UPDATE_STEPS) + 1):
            with self.reporter.step(number):
                pass

        if self.listing is None or view.hashed:
            # Refresh the stored sizes and mtimes, so the next run reads nothing.
            self._refresh_listing(view)

        self.result.warnings = list(self.reporter.warnings)
        self.result.action = "unchanged"
        self.result.message = (
            f"CodeMate {self.target} is already installed and its files match the "
            "release; nothing changed"
        )
        return self.result

    def _refresh_listing(self, view: InstallView) -> None:
        if self.listing is None:
            return
        files = {}
        for path, entry in self.listing.files.items():
            state = view.state(path)
            if state.sha256 is None or state.size is None or state.mtime_ns is None:
                continue
            files[path] = InstalledFile(
                state.sha256, state.size, state.mode or entry.mode, state.mtime_ns
            )
        save_listing(
            self.layout.installed_listing,
            InstalledListing(
                self.listing.version,
                files,
                self.listing.entry_point,
                self.listing.requirements,
            ),
        )

    # Step 5

    def _download(
        self, client: MiddlewareClient, state: TargetState, plan: Plan
    ) -> dict[str, Path]:
        staging = self.layout.staging_dir / str(self.target)
        files_dir = staging / "files"
        files_dir.mkdir(parents=True, exist_ok=True)
        self.downloads = {wanted.path: wanted for wanted in plan.downloads}

        items = [
            DownloadItem(
                version=wanted.version,
                path=wanted.path,
                dest=store_path(files_dir, wanted.path),
                sha256=wanted.sha256,
                size=wanted.size,
            )
            for wanted in plan.downloads
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

        stats = download_all(
            client,
            items,
            on_progress=self._report_download,
            cancel=self.cancel,
        )
        self.result.files_downloaded = stats.files_downloaded
        self.result.files_reused = stats.files_reused
        self.result.bytes_downloaded = stats.bytes_downloaded
        self.verified = stats.verified
        return {item.path: item.dest for item in items}

    def _report_download(self, progress: DownloadProgress) -> None:
        if progress.bytes_total:
            fraction = progress.bytes_done / progress.bytes_total
        elif progress.files_total:
            fraction = progress.files_done / progress.files_total
        else:
            fraction = 1.0
        self.reporter.progress(
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

    # Step 6

    def _verify(self, staged: dict[str, Path]) -> dict[str, tuple[str, int]]:
        total = len(staged)
        hashes: dict[str, tuple[str, int]] = {}

        def check(path: str) -> tuple[str, tuple[str, int]]:
            wanted = self.downloads.get(path)
            return path, verify_staged_file(
                path,
                staged[path],
                wanted.sha256 if wanted is not None else None,
                wanted.size if wanted is not None else None,
                self.verified.get(staged[path]),
            )

        # A file whose hash the download recorded needs one lstat, which is
        # cheaper than handing it to a thread; the others are read and hashed.
        recorded = [path for path in staged if staged[path] in self.verified]
        to_hash = [path for path in staged if staged[path] not in self.verified]
        done = 0
        for path in recorded:
            hashes[path] = check(path)[1]
            done += 1
            if done % VERIFY_REPORT_EVERY == 0:
                self.reporter.items(done, total)
        with ThreadPoolExecutor(max_workers=VERIFY_WORKERS) as pool:
            for path, digest in pool.map(check, to_hash):
                hashes[path] = digest
                done += 1
                self.reporter.items(done, total)
        self.reporter.items(done, total)
        self._check_cancel()
        return hashes

    # Steps 7 to 10

    def _install(
        self,
        state: TargetState,
        plan: Plan,
        hashes: dict[str, tuple[str, int]],
        staged: dict[str, Path],
    ) -> None:
        step = self.reporter.step
        backups = plan.count(OpKind.BACKUP)
        staging_files = self.layout.staging_dir / str(self.target) / "files"

        transaction = Transaction.begin(
            self.layout,
            ops=plan.ops,
            staging_dir=staging_files,
            from_version=self.result.from_version,
            to_version=str(self.target),
            keep_backups=self.limits.keep_backups,
        )
        with transaction:
            with step(7):
                transaction.move_out(
                    lambda done, _total: self.reporter.items(done, backups),
                    self.cancel,
                )
            with step(8):
                transaction.move_in(
                    lambda done, total: self.reporter.items(
                        done - backups, total - backups
                    ),
                    self.cancel,
                )
            with step(9), self.collector.paused():
                listing = self._new_listing(state, plan, hashes)
                transaction.commit(
                    listing=listing,
                    requirements=self._requirements_source(state, staged),
                    record=BackupRecord(
                        path=transaction.backup_dir,
                        kind=TransactionKind.UPDATE,
                        from_version=self.result.from_version,
                        to_version=str(self.target),
                        created_at=transaction.journal.created_at,
                        transaction_id=transaction.journal.transaction_id,
                        ops=plan.ops,
                        stored=stored_from_states(plan.moved_out),
                    ),
                )
            with step(10):
                transaction.finish()

        if self.installed is not None:
            self.result.backup = transaction.backup_dir.name
        self.result.action = _action(self.change)
        self.result.message = self._summary()

    def _new_listing(
        self,
        state: TargetState,
        plan: Plan,
        hashes: dict[str, tuple[str, int]],
    ) -> InstalledListing:
        files = {}
        for path, wanted in state.files.items():
            kept = plan.kept.get(path)
            if kept is not None and kept.sha256 is not None:
                mode = kept.mode if kept.mode is not None else 0o644
                if _HAS_POSIX_MODES and wanted.mode is not None:
                    mode = wanted.mode
                files[path] = InstalledFile(
                    kept.sha256, kept.size or 0, mode, kept.mtime_ns or 0
                )
                continue

            info = os.stat(install_path(self.layout.install_dir, path))
            files[path] = InstalledFile(
                sha256=hashes[path][0],
                size=info.st_size,
                mode=stat.S_IMODE(info.st_mode),
                mtime_ns=info.st_mtime_ns,
            )

        return InstalledListing(
            version=str(self.target),
            files=files,
            entry_point=state.entry_point,
            requirements=state.requirements,
        )

    def _requirements_source(
        self, state: TargetState, staged: dict[str, Path]
    ) -> Path | None:
        if state.requirements is None:
            return None
        if state.requirements in state.files:
            return install_path(self.layout.install_dir, state.requirements)
        return staged.get(state.requirements)

    def _summary(self) -> str:
        result = self.result
        if result.action == "installed":
            return (
                f"Installed CodeMate {self.target}: {result.files_placed} files "
                f"placed, {result.files_kept} already present"
            )
        changed = (
            f"{result.files_downloaded} files downloaded, {result.files_placed} "
            f"replaced or added, {result.files_removed} removed"
        )
        if result.action == "repaired":
            return f"Repaired CodeMate {self.target}: {changed}"
        verb = "Downgraded" if result.action == "downgraded" else "Updated"
        return f"{verb} CodeMate from {result.from_version} to {self.target}: {changed}"

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise SetupCancelledError(
                "the update was cancelled; the installed version was not changed"
            )


class _CollectorPause:
    """Keeps the cyclic garbage collector off the per-file records of an update.

    Comparing a large installation builds hundreds of thousands of small
    objects without reference cycles, which reference counting frees. The
    collector would walk all of them at each full collection, a large share
    of the comparison. It is paused while they are built, and what exists at
    the end of a pause is frozen (``gc.freeze``), so that later collections
    skip it too, until :meth:`end`. Nothing changes when the collector is
    off, or when the caller froze objects of its own.
    """

    def __init__(self) -> None:
        self._active = gc.isenabled() and gc.get_freeze_count() == 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Pause the collector for the ``with`` block."""
        if not self._active:
            yield
            return
        gc.disable()
        try:
            yield
        finally:
            gc.freeze()
            gc.enable()

    def end(self) -> None:
        """Hand the frozen objects back to the collector."""
        if self._active:
            gc.unfreeze()


def _action(change: ChangeKind) -> str:
    return {
        ChangeKind.INSTALL: "installed",
        ChangeKind.SAME: "repaired",
        ChangeKind.UPGRADE: "updated",
        ChangeKind.MAJOR_UPGRADE: "updated",
        ChangeKind.DOWNGRADE: "downgraded",
    }[change]

"""One run of the update workflow: the class that runs the ten steps in order.

:class:`UpdateRun` contains steps 1 to 4 and calls
:mod:`codemate_setup.update_staging` for steps 5 and 6 and
:mod:`codemate_setup.update_install` for steps 7 to 10. It fills in the
:class:`~codemate_setup.update_result.UpdateResult` as the steps run.
"""

from __future__ import annotations

import logging
import threading

from packaging.version import Version

from codemate_setup.backups import find_restore_chain, list_backups
from codemate_setup.client import MiddlewareClient
from codemate_setup.config import RunOptions
from codemate_setup.errors import SetupCancelledError, UsageError
from codemate_setup.fsutil import HAS_POSIX_MODES
from codemate_setup.gc_pause import CollectorPause
from codemate_setup.homefiles import (
    prepare_folders,
    read_installed_version,
    recover_and_report,
)
from codemate_setup.install_view import InstallView
from codemate_setup.listing import (
    PERMISSION_BITS,
    InstalledFile,
    InstalledListing,
    load_listing,
    save_listing,
)
from codemate_setup.plan import OpKind, Plan, build_plan
from codemate_setup.resolve import (
    ResolvedTarget,
    listing_from_manifest,
    release_versions,
    require_published,
    resolve_target,
)
from codemate_setup.steps import StepReporter
from codemate_setup.target import ChangeKind, TargetState, classify_change
from codemate_setup.update_confirm import Confirm, confirm_major_update
from codemate_setup.update_install import apply_update
from codemate_setup.update_result import (
    UpdateResult,
    action_for_change,
    describe_update,
)
from codemate_setup.update_staging import (
    StagedFiles,
    download_to_staging,
    verify_staged,
)

logger = logging.getLogger(__name__)


class UpdateRun:
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
        self.collector = CollectorPause()
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
                f"{self._downgrade_advice()}"
            )
        self._check_cancel()

    def _downgrade_advice(self) -> str:
        install = "pass --allow-downgrade to install it from the middleware"
        backups = list_backups(self.layout.backups_dir)
        try:
            find_restore_chain(backups, str(self.installed), str(self.target))
        except UsageError:
            return install
        return (
            f"restore it from the backups with update.py --rollback "
            f"{self.target}, or {install}"
        )

    # Step 2

    def _retrieve_releases(self, client: MiddlewareClient) -> list[Version]:
        client.health()
        versions = release_versions(client.list_releases())
        require_published(versions, self.target, client.display_url)
        # The release's own spelling ("3.0.0" when "3.0" was typed) goes into
        # version.txt, the listing and the names of backups.
        self.target = versions[versions.index(self.target)]
        self.result.to_version = str(self.target)
        info = client.release_info(self.target)
        self.reporter.tracker.set_phase_info(
            self.reporter.phase,
            "release",
            {
                key: info.get(key)
                for key in ("version", "file_count", "total_bytes")
                if key in info
            },
            defer=True,
        )

        if self.change is ChangeKind.MAJOR_UPGRADE:
            confirm_major_update(
                self.installed, self.target, yes=self.yes, confirm=self.confirm
            )
        self._check_cancel()
        return versions

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
            self.reporter.tracker.record_fallback(
                self.reporter.phase, resolved.fallback
            )
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
        plan = build_plan(state, owned, view, compare_modes=HAS_POSIX_MODES)

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
        for number in range(5, len(self.reporter.steps) + 1):
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
            mode = (state.mode or entry.mode) & PERMISSION_BITS
            files[path] = InstalledFile(state.sha256, state.size, mode, state.mtime_ns)
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
    ) -> StagedFiles:
        staging = self.layout.staging_dir / str(self.target)
        staged = download_to_staging(
            client, staging, state, plan, self.reporter, self.cancel
        )
        self.result.files_downloaded = staged.stats.files_downloaded
        self.result.files_reused = staged.stats.files_reused
        self.result.bytes_downloaded = staged.stats.bytes_downloaded
        return staged

    # Step 6

    def _verify(self, staged: StagedFiles) -> dict[str, tuple[str, int]]:
        hashes = verify_staged(staged, self.reporter)
        self._check_cancel()
        return hashes

    # Steps 7 to 10

    def _install(
        self,
        state: TargetState,
        plan: Plan,
        hashes: dict[str, tuple[str, int]],
        staged: StagedFiles,
    ) -> None:
        backup_dir = apply_update(
            self.layout,
            state,
            plan,
            hashes,
            staged.paths,
            target=self.target,
            from_version=self.result.from_version,
            keep_backups=self.limits.keep_backups,
            reporter=self.reporter,
            cancel=self.cancel,
            collector=self.collector,
        )
        if self.installed is not None:
            self.result.backup = backup_dir.name
        self.result.action = action_for_change(self.change)
        self.result.message = describe_update(self.result, self.target)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise SetupCancelledError(
                "the update was cancelled; the installed version was not changed"
            )

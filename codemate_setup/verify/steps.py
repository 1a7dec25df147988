"""The preparation, system, files and ports steps of the verification."""

from __future__ import annotations

import logging
import platform
from pathlib import Path

from codemate_setup.errors import UsageError
from codemate_setup.verify import appfiles, ports, system
from codemate_setup.verify.context import VerifyContext
from codemate_setup.verify.model import CheckResult, CheckStatus
from codemate_setup.verify.probe import probe_interpreter
from codemate_setup.versions import parse_version

logger = logging.getLogger(__name__)


def prepare(ctx: VerifyContext) -> None:
    """Step 1: read the installed version and the installed listing."""
    layout = ctx.options.layout
    version_text = _read_version_file(ctx)

    try:
        ctx.listing = appfiles.load_listing(layout.installed_listing)
    except appfiles.ListingError as e:
        ctx.add(
            CheckResult(
                "installation.listing",
                "installed listing",
                CheckStatus.FAIL,
                f"the installed listing is invalid: {e}",
                "reinstall with: python update.py VERSION, which writes a new listing",
            )
        )

    if version_text is None:
        return

    listed = ctx.listing.version if ctx.listing else None
    if listed is not None and ctx.installed_version is not None:
        if _same_version(listed, str(ctx.installed_version)):
            return
        ctx.add(
            CheckResult(
                "installation.listing",
                "installed listing",
                CheckStatus.WARN,
                f"the listing records version {listed}, version.txt contains "
                f"{ctx.installed_version}",
                f"repair the installation with: python update.py "
                f"{ctx.installed_version}",
            )
        )


def _read_version_file(ctx: VerifyContext) -> str | None:
    layout = ctx.options.layout
    try:
        text = layout.version_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        ctx.add(
            CheckResult(
                "installation.version",
                "installation",
                CheckStatus.WARN,
                f"no installation: {layout.version_file} not found",
                "install the application with: python update.py VERSION",
            )
        )
        return None
    except (OSError, UnicodeDecodeError) as e:
        text = f"<unreadable: {e}>"

    try:
        ctx.installed_version = parse_version(text)
    except UsageError:
        ctx.add(
            CheckResult(
                "installation.version",
                "installation",
                CheckStatus.FAIL,
                f"{layout.version_file} must contain a version such as 3.0.0, "
                f"found {text[:80]!r}",
                "reinstall with: python update.py VERSION",
            )
        )
        return text

    ctx.report.installed_version = str(ctx.installed_version)
    ctx.add(
        CheckResult(
            "installation.version",
            "installation",
            CheckStatus.OK,
            f"version {ctx.installed_version} in {layout.install_dir}",
        )
    )
    return text


def _same_version(left: str, right: str) -> bool:
    try:
        return parse_version(left) == parse_version(right)
    except UsageError:
        return False


def python_requirement(ctx: VerifyContext) -> str:
    """Return the release's Python specifier, else the configured default."""
    declared = ctx.listing.requires_python if ctx.listing else None
    return declared or ctx.options.thresholds.python_requires


def check_system(ctx: VerifyContext) -> None:
    """Step 2: platform, Python version, free disk and available memory."""
    options = ctx.options
    thresholds = options.thresholds

    ctx.add(system.check_platform(*system.current_platform()))
    ctx.add(
        system.check_python(
            ctx.base_version, python_requirement(ctx), str(ctx.base_python)
        )
    )

    folders = [options.layout.home, options.layout.install_dir]
    try:
        usages = system.measure_disks(folders)
    except OSError as e:
        ctx.add(
            CheckResult(
                "system.disk",
                "free disk",
                CheckStatus.WARN,
                f"cannot measure free disk for {options.layout.home}: {e}",
                "check that the home's drive is mounted",
            )
        )
        usages = []
    for index, usage in enumerate(usages):
        check_id = "system.disk" if index == 0 else f"system.disk.{index + 1}"
        ctx.add(system.check_disk(usage, thresholds.min_free_disk_bytes, check_id))

    available, limited = system.measure_memory()
    ctx.add(system.check_memory(available, thresholds.min_memory_bytes, limited))


def base_interpreter_version(python: Path | None, timeout: float) -> str:
    """Return the version of the interpreter that creates the environment.

    Raises:
        VerificationError: If ``python`` (from ``--python``) cannot run.
    """
    if python is None:
        return platform.python_version()
    return probe_interpreter(python, timeout, distributions=False).python


def check_files(ctx: VerifyContext) -> None:
    """Step 6: installed files against the installed listing, and the entry point."""
    layout = ctx.options.layout
    version = ctx.installed_version
    if version is None:
        return

    if ctx.listing is None:
        if layout.installed_listing.exists():
            return  # already reported as invalid in step 1
        ctx.add(
            CheckResult(
                "files.listing",
                "application files",
                CheckStatus.WARN,
                f"cannot verify the files of version {version}: "
                f"{layout.installed_listing} not found",
                f"repair the installation with: python update.py {version}",
            )
        )
        return

    comparison = appfiles.compare_files(
        ctx.listing, layout.install_dir, deep=ctx.options.deep
    )
    ctx.add(appfiles.files_result(comparison, str(version), ctx.options.deep))

    entry = appfiles.entry_point_result(ctx.listing, layout.install_dir, str(version))
    if entry is not None:
        ctx.add(entry)


def check_service_ports(ctx: VerifyContext) -> None:
    """Step 7: every configured service port."""
    layout = ctx.options.layout
    limits = ctx.options.verify_limits
    settings = ports.PortProbeSettings(
        connect_timeout=limits.port_connect_timeout,
        read_timeout=limits.port_read_timeout,
        app_folders=(layout.install_dir, layout.environment_dir),
    )
    ctx.add(*ports.check_ports(ctx.ports, settings))

"""Step 4 of the verification: read or fetch the requirements, and parse them."""

from __future__ import annotations

import logging

from codemate_setup.errors import (
    ManifestError,
    MiddlewareError,
    UsageError,
    VerificationError,
)
from codemate_setup.fsutil import atomic_write_bytes
from codemate_setup.verify.context import VerifyContext
from codemate_setup.verify.model import CheckResult, CheckStatus
from codemate_setup.verify.requirements import parse_requirements
from codemate_setup.verify.requirements_source import (
    DEFAULT_REQUIREMENTS_PATH,
    RequirementsSource,
    fetch_middleware_requirements,
    read_local_requirements,
)

logger = logging.getLogger(__name__)


def fetch_requirements(ctx: VerifyContext) -> None:
    """Step 4: read the home's requirements file, else the middleware's copy."""
    layout = ctx.options.layout
    limits = ctx.options.verify_limits
    try:
        source = read_local_requirements(
            layout.requirements_file, limits.max_requirements_bytes
        )
    except VerificationError as e:
        ctx.add(_requirements_failure(str(e), "restore the file or reinstall"))
        return

    if source is None:
        source = _requirements_from_middleware(ctx)
        if source is None:
            return

    _parse_requirements(ctx, source)


def _requirements_failure(value: str, action: str) -> CheckResult:
    return CheckResult("requirements", "requirements", CheckStatus.FAIL, value, action)


def _requirements_from_middleware(ctx: VerifyContext) -> RequirementsSource | None:
    options = ctx.options
    layout = options.layout
    version = ctx.installed_version
    if version is None:
        ctx.add(
            CheckResult(
                "requirements",
                "requirements",
                CheckStatus.OK,
                "nothing to verify: no requirements file and no installed version",
            )
        )
        return None

    listing = ctx.listing
    release_path = listing.requirements if listing else DEFAULT_REQUIREMENTS_PATH
    if release_path is None:
        ctx.add(
            CheckResult(
                "requirements",
                "requirements",
                CheckStatus.OK,
                f"version {version} declares no requirements",
            )
        )
        return None

    try:
        source = fetch_middleware_requirements(
            middleware_url=options.middleware_url,
            version=version,
            release_path=release_path,
            repo=options.repo,
            allow_insecure_http=options.allow_insecure_http,
            connect_timeout=options.limits.connect_timeout,
            read_timeout=options.limits.read_timeout,
            max_bytes=options.verify_limits.max_requirements_bytes,
        )
    except (MiddlewareError, UsageError, ManifestError) as e:
        ctx.add(
            _requirements_failure(
                f"{layout.requirements_file} not found, and the middleware's copy "
                f"for version {version} could not be fetched: {e}",
                "start the middleware (or pass --middleware-url), or restore "
                f"{layout.requirements_file.name} in {layout.home}",
            )
        )
        return None

    _save_fetched_copy(ctx, source)
    return source


def _save_fetched_copy(ctx: VerifyContext, source: RequirementsSource) -> None:
    target = ctx.options.layout.requirements_file
    if ctx.options.check_only:
        ctx.add(
            CheckResult(
                "requirements",
                "requirements",
                CheckStatus.WARN,
                f"{target} not found; using the middleware's copy from "
                f"{source.location}; a repair would save it",
                "run without --check-only to save it",
            )
        )
        return

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, source.text.encode("utf-8"))
    except OSError as e:
        ctx.add(
            CheckResult(
                "requirements",
                "requirements",
                CheckStatus.WARN,
                f"fetched the requirements from {source.location} but cannot save "
                f"them to {target}: {e}",
                "check the home folder's permissions",
            )
        )
        return

    ctx.add(
        CheckResult(
            "requirements",
            "requirements",
            CheckStatus.FIXED,
            f"{target.name} was missing; saved the middleware's copy from "
            f"{source.location}",
        )
    )


def _parse_requirements(ctx: VerifyContext, source: RequirementsSource) -> None:
    # NOTE: the "-r" includes of a middleware copy are looked up in the home,
    # because the middleware's copies of included files are not fetched.
    base_dir = ctx.options.layout.requirements_file.parent
    name = ctx.options.layout.requirements_file.name
    parsed = parse_requirements(
        source.text,
        name,
        base_dir,
        max_depth=ctx.options.verify_limits.max_include_depth,
    )
    if parsed.problems:
        more = len(parsed.problems) - 1
        suffix = f" (and {more} more problems)" if more else ""
        ctx.add(
            _requirements_failure(
                parsed.problems[0] + suffix, "fix the requirements file"
            )
        )
        return

    ctx.requirements = parsed
    ctx.requirements_dir = base_dir
    if source.origin == "local":
        opaque = len(parsed.opaque)
        extra = f" and {opaque} lines for the installer" if opaque else ""
        ctx.add(
            CheckResult(
                "requirements",
                "requirements",
                CheckStatus.OK,
                f"{len(parsed.requirements)} requirements{extra} in {source.location}",
            )
        )

"""Step 5 of the verification: judge the packages, install what is missing or wrong."""

from __future__ import annotations

import logging
from pathlib import Path

from packaging.utils import canonicalize_name

from codemate_setup.errors import VerificationError
from codemate_setup.verify.context import PHASE, VerifyContext
from codemate_setup.verify.environment import interpreter_path
from codemate_setup.verify.installer import InstallSettings, PackageInstaller
from codemate_setup.verify.model import CheckResult, CheckStatus
from codemate_setup.verify.options import Installer
from codemate_setup.verify.packages import (
    Conflict,
    Judgement,
    PackagePlan,
    Verdict,
    find_conflicts,
    plan_packages,
    required_closure,
)
from codemate_setup.verify.probe import InterpreterProbe, probe_interpreter

logger = logging.getLogger(__name__)

# Lines named in a message before "and N more".
SHOWN_LINES = 5


def verify_packages(ctx: VerifyContext) -> None:
    """Step 5: judge every requirement; install only what is missing or wrong."""
    requirements = ctx.requirements
    if requirements is None:
        return

    probe = _planning_probe(ctx)
    if probe is None:
        return

    plan = plan_packages(requirements.lines, probe.distributions, probe.markers)
    closure = required_closure(plan, probe.distributions, probe.markers)
    conflicts = find_conflicts(probe.distributions, probe.markers)
    repairs = _repair_lines(conflicts, closure)
    lines = [line.text for line in plan.to_install] + repairs

    if not lines:
        ctx.add(_packages_result(CheckStatus.OK, _met_text(plan)))
        _report_conflicts(ctx, conflicts, closure)
        return

    if ctx.options.check_only or ctx.env_probe is None:
        ctx.add(
            _packages_result(
                CheckStatus.FAIL,
                f"a repair would install {_describe_needed(plan, repairs)}",
                "run without --check-only to install them",
                {"to_install": lines},
            )
        )
        _report_conflicts(ctx, conflicts, closure)
        return

    _install(ctx, plan, lines, requirements.options)


def _planning_probe(ctx: VerifyContext) -> InterpreterProbe | None:
    """Read the environment's distributions, or take the repair plan's markers.

    Returns:
        The probe to plan against, or None after reporting why there is none.
    """
    if ctx.env_probe is None:
        if ctx.repair_probe is None:
            ctx.add(
                _packages_result(
                    CheckStatus.FAIL,
                    "cannot be verified without a working environment",
                    "repair the environment first (see above)",
                )
            )
        return ctx.repair_probe

    env_python = interpreter_path(ctx.options.layout.environment_dir)
    try:
        return probe_interpreter(env_python, ctx.options.verify_limits.probe_timeout)
    except VerificationError as e:
        ctx.add(
            _packages_result(CheckStatus.FAIL, str(e), "run the verification again")
        )
        return None


def _install(
    ctx: VerifyContext, plan_before: PackagePlan, lines: list[str], options: list[str]
) -> None:
    env_python = interpreter_path(ctx.options.layout.environment_dir)
    installer = PackageInstaller(
        _install_settings(ctx, env_python),
        ctx.requirements_dir or ctx.options.layout.home,
        cancel=ctx.cancel,
        on_progress=lambda done, total: ctx.sink.set_step_progress(
            PHASE,
            done / total if total else 1.0,
            {"items_done": done, "items_total": total},
        ),
        on_fallback=lambda message: ctx.sink.record_fallback(PHASE, message),
    )
    try:
        installer.install(lines, options)
    except VerificationError as e:
        ctx.report.installer_runs += installer.outcome.runs
        ctx.add(
            _packages_result(
                CheckStatus.FAIL,
                str(e),
                "read the installer output in the log file, then check the "
                "index (--index-url, --find-links) and the network",
            )
        )
        return
    ctx.report.installer_runs += installer.outcome.runs

    _recheck_after_install(ctx, plan_before, lines)


def _install_settings(ctx: VerifyContext, env_python: Path) -> InstallSettings:
    options = ctx.options
    return InstallSettings(
        tool=ctx.tool,
        fallback_to_pip=options.installer is Installer.AUTO,
        env_python=env_python,
        uv_path=ctx.uv_path,
        index_url=options.index_url,
        find_links=options.find_links,
        no_index=options.no_index,
        batch_size=options.verify_limits.install_batch_size,
        timeout=options.verify_limits.install_timeout,
    )


def _recheck_after_install(
    ctx: VerifyContext, plan_before: PackagePlan, lines: list[str]
) -> None:
    assert ctx.requirements is not None
    env_python = interpreter_path(ctx.options.layout.environment_dir)
    try:
        probe = probe_interpreter(env_python, ctx.options.verify_limits.probe_timeout)
    except VerificationError as e:
        ctx.add(_packages_result(CheckStatus.FAIL, f"after the install, {e}", None))
        return

    plan = plan_packages(ctx.requirements.lines, probe.distributions, probe.markers)
    unmet = [
        j
        for j in plan.judgements
        if j.verdict.needs_install and j.verdict is not Verdict.UNJUDGED
    ]
    closure = required_closure(plan, probe.distributions, probe.markers)
    conflicts = find_conflicts(probe.distributions, probe.markers)

    if unmet:
        ctx.add(
            _packages_result(
                CheckStatus.FAIL,
                f"still not met after the install: {_describe(unmet)}",
                "read the installer output in the log file",
            )
        )
    else:
        # Lines only the installer can judge go to it on every run, so handing
        # them over is no repair by itself.
        judged = len(plan_before.to_install) - plan_before.count(Verdict.UNJUDGED)
        repaired = judged > 0 or len(lines) > len(plan_before.to_install)
        ctx.add(
            _packages_result(
                CheckStatus.FIXED if repaired else CheckStatus.OK,
                f"installed {_shown(lines)}; {_met_text(plan)}",
                None,
                {"installed": lines},
            )
        )
    _report_conflicts(ctx, conflicts, closure)


def _packages_result(
    status: CheckStatus,
    value: str,
    action: str | None = None,
    detail: dict[str, object] | None = None,
) -> CheckResult:
    return CheckResult(
        "packages", "Python packages", status, value, action, detail or {}
    )


def _met_text(plan: PackagePlan) -> str:
    text = f"{plan.count(Verdict.SATISFIED)} requirements met"
    skipped = plan.count(Verdict.NOT_APPLICABLE)
    if skipped:
        text += f", {skipped} not for this interpreter"
    handed = plan.count(Verdict.UNJUDGED)
    if handed:
        text += f", {handed} lines judged by the installer"
    return text


def _describe(judgements: list[Judgement]) -> str:
    shown = [f"{j.line.text} ({j.reason})" for j in judgements[:SHOWN_LINES]]
    text = "; ".join(shown)
    if len(judgements) > SHOWN_LINES:
        text += f"; and {len(judgements) - SHOWN_LINES} more"
    return text


def _describe_needed(plan: PackagePlan, repairs: list[str]) -> str:
    needed = [j for j in plan.judgements if j.verdict.needs_install]
    parts = []
    if needed:
        parts.append(f"{len(needed)} requirements: {_describe(needed)}")
    if repairs:
        parts.append(f"{len(repairs)} missing dependencies: {_shown(repairs)}")
    return " and ".join(parts)


def _shown(lines: list[str]) -> str:
    text = ", ".join(lines[:SHOWN_LINES])
    if len(lines) > SHOWN_LINES:
        text += f" and {len(lines) - SHOWN_LINES} more"
    return text


def _repair_lines(conflicts: list[Conflict], closure: set[str]) -> list[str]:
    """Return requirements that repair the broken dependencies the application needs."""
    lines: list[str] = []
    for conflict in conflicts:
        if canonicalize_name(conflict.dependent) not in closure:
            continue
        line = conflict.repair_line()
        if line not in lines:
            lines.append(line)
    return lines


def _report_conflicts(
    ctx: VerifyContext, conflicts: list[Conflict], closure: set[str]
) -> None:
    needed = [c for c in conflicts if canonicalize_name(c.dependent) in closure]
    other = [c for c in conflicts if canonicalize_name(c.dependent) not in closure]
    env_python = interpreter_path(ctx.options.layout.environment_dir)

    if needed:
        ctx.add(
            CheckResult(
                "packages.conflicts",
                "package dependencies",
                CheckStatus.FAIL,
                "; ".join(c.message() for c in needed),
                "install a matching version of each, such as: "
                f"{env_python} -m pip install '{needed[0].repair_line()}'",
                {"conflicts": [c.message() for c in needed]},
            )
        )
    if other:
        ctx.add(
            CheckResult(
                "packages.conflicts.other",
                "other packages",
                CheckStatus.WARN,
                "; ".join(c.message() for c in other),
                "the application does not need these packages; repair or remove "
                "them with pip",
                {"conflicts": [c.message() for c in other]},
            )
        )

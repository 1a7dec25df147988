"""Step 3 of the verification: find, create or rebuild the environment."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from codemate_setup.errors import VerificationError
from codemate_setup.verify.context import PHASE, VerifyContext
from codemate_setup.verify.environment import (
    Diagnosis,
    EnvironmentState,
    create_environment,
    diagnose,
    gather_facts,
    interpreter_path,
)
from codemate_setup.verify.leftovers import ChildRecords, restore_interrupted_rebuild
from codemate_setup.verify.model import CheckResult, CheckStatus
from codemate_setup.verify.options import Installer
from codemate_setup.verify.probe import InterpreterProbe, probe_interpreter
from codemate_setup.verify.steps import python_requirement

logger = logging.getLogger(__name__)


def prepare_environment(ctx: VerifyContext) -> None:
    """Step 3: find the environment, and create or rebuild it when needed."""
    env_dir = ctx.options.layout.environment_dir
    if not ctx.options.check_only:
        _clean_up_after_killed_run(ctx, env_dir)
    diagnosis = diagnose(gather_facts(env_dir))
    logger.debug("environment %s: %s (%s)", env_dir, diagnosis.state, diagnosis.reason)

    if diagnosis.state is EnvironmentState.PRESENT:
        probe, diagnosis = _probe_present(ctx, env_dir)
        if probe is not None:
            ctx.env_probe = probe
            ctx.add(
                CheckResult(
                    "environment",
                    "environment",
                    CheckStatus.OK,
                    f"Python {probe.python} in {env_dir}",
                )
            )
            return

    if ctx.options.check_only:
        _report_needed_repair(ctx, diagnosis)
        return

    _build_environment(ctx, diagnosis)


def _clean_up_after_killed_run(ctx: VerifyContext, env_dir: Path) -> None:
    """Stop the tools of a killed verification and undo its unfinished rebuild."""
    records = ChildRecords(ctx.options.layout.children_dir)
    for result in records.stop_leftovers():
        status = CheckStatus.FIXED if result.stopped else CheckStatus.WARN
        ctx.add(
            CheckResult("environment.leftover", "leftover tool", status, result.message)
        )
    restored = restore_interrupted_rebuild(env_dir)
    if restored is not None:
        ctx.add(
            CheckResult(
                "environment.rebuild", "unfinished rebuild", CheckStatus.FIXED, restored
            )
        )


def _probe_present(
    ctx: VerifyContext, env_dir: Path
) -> tuple[InterpreterProbe | None, Diagnosis]:
    timeout = ctx.options.verify_limits.probe_timeout
    try:
        probe = probe_interpreter(
            interpreter_path(env_dir), timeout, distributions=False
        )
    except VerificationError as e:
        return None, Diagnosis(EnvironmentState.BROKEN, f"it does not run: {e}")

    problem = _version_problem(ctx, probe.python)
    if problem is not None:
        return None, Diagnosis(EnvironmentState.BROKEN, problem)
    return probe, Diagnosis(EnvironmentState.PRESENT, "it runs")


def _meets(version: str, required: str) -> bool:
    """Tell whether a Python version meets a specifier.

    An invalid specifier counts as met, because step 2 already reports it and
    it must not block a repair here.
    """
    try:
        return SpecifierSet(required).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True


def _version_problem(ctx: VerifyContext, version: str) -> str | None:
    """Return why an environment's Python cannot stay, or None when it can."""
    required = python_requirement(ctx)
    if not _meets(version, required):
        return f"it runs Python {version}, which does not meet {required}"

    if ctx.options.python is not None and version != ctx.base_version:
        return f"it runs Python {version}, but --python is Python {ctx.base_version}"
    return None


def _tool_label(tool: Installer) -> str:
    return "uv venv" if tool is Installer.UV else "python -m venv"


def _report_needed_repair(ctx: VerifyContext, diagnosis: Diagnosis) -> None:
    env_dir = ctx.options.layout.environment_dir
    missing = diagnosis.state is EnvironmentState.MISSING
    verb = "create" if missing else "rebuild"
    state = "missing" if missing else "broken"
    ctx.add(
        CheckResult(
            "environment",
            "environment",
            CheckStatus.FAIL,
            f"{env_dir} is {state}: {diagnosis.reason}; a repair would {verb} it "
            f"with {_tool_label(ctx.tool)} from Python {ctx.base_version}",
            f"run without --check-only to {verb} it",
            {"state": diagnosis.state.value, "reason": diagnosis.reason},
        )
    )
    ctx.repair_probe = _base_interpreter_markers(ctx)


def _base_interpreter_markers(ctx: VerifyContext) -> InterpreterProbe | None:
    """Return the base interpreter's markers and no packages, to plan a repair."""
    if ctx.options.python is None:
        markers = {key: str(value) for key, value in default_environment().items()}
        return InterpreterProbe(
            ctx.base_version, sys.executable, sys.prefix, sys.base_prefix, markers
        )

    try:
        probe = probe_interpreter(
            ctx.options.python,
            ctx.options.verify_limits.probe_timeout,
            distributions=False,
        )
    except VerificationError as e:
        logger.debug("cannot plan packages for %s: %s", ctx.options.python, e)
        return None
    return InterpreterProbe(
        probe.python, probe.executable, probe.prefix, probe.base_prefix, probe.markers
    )


def _build_environment(ctx: VerifyContext, diagnosis: Diagnosis) -> None:
    env_dir = ctx.options.layout.environment_dir
    required = python_requirement(ctx)
    if not _meets(ctx.base_version, required):
        ctx.add(
            CheckResult(
                "environment",
                "environment",
                CheckStatus.FAIL,
                f"{env_dir} needs a repair ({diagnosis.reason}), but Python "
                f"{ctx.base_version} ({ctx.base_python}) does not meet {required}",
                f"install a Python that meets {required} and pass it with "
                "--python PATH",
                {"state": diagnosis.state.value, "reason": diagnosis.reason},
            )
        )
        return

    tool = ctx.tool
    try:
        _create(ctx, tool)
    except VerificationError as e:
        if tool is not Installer.UV or ctx.options.installer is not Installer.AUTO:
            _report_build_failure(ctx, e)
            return
        ctx.sink.record_fallback(
            PHASE, f"uv failed to create the environment ({e}); using python -m venv"
        )
        tool = Installer.PIP
        try:
            _create(ctx, tool)
        except VerificationError as e2:
            _report_build_failure(ctx, e2)
            return

    try:
        probe = probe_interpreter(
            interpreter_path(env_dir),
            ctx.options.verify_limits.probe_timeout,
            distributions=False,
        )
    except VerificationError as e:
        _report_build_failure(ctx, e)
        return

    ctx.env_probe = probe
    verb = "created" if diagnosis.state is EnvironmentState.MISSING else "rebuilt"
    cause = "" if verb == "created" else f" because {diagnosis.reason}"
    ctx.add(
        CheckResult(
            "environment",
            "environment",
            CheckStatus.FIXED,
            f"{verb} {env_dir} with {_tool_label(tool)} (Python {probe.python}){cause}",
            None,
            {"state": diagnosis.state.value, "reason": diagnosis.reason},
        )
    )


def _create(ctx: VerifyContext, tool: Installer) -> None:
    ctx.report.installer_runs += 1
    create_environment(
        ctx.options.layout.environment_dir,
        tool=tool,
        base_python=ctx.base_python,
        python_version=ctx.base_version,
        uv_path=ctx.uv_path,
        timeout=ctx.options.verify_limits.venv_timeout,
        cancel=ctx.cancel,
    )


def _report_build_failure(ctx: VerifyContext, error: VerificationError) -> None:
    ctx.add(
        CheckResult(
            "environment",
            "environment",
            CheckStatus.FAIL,
            str(error),
            "fix the cause above and run the verification again",
        )
    )

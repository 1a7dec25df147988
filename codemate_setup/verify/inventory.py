"""The package step's read-only path as one call, for benchmarks and tools."""

from __future__ import annotations

from pathlib import Path

from codemate_setup.verify.environment import interpreter_path
from codemate_setup.verify.packages import PackagePlan, plan_packages
from codemate_setup.verify.probe import probe_interpreter
from codemate_setup.verify.requirements import parse_requirements, read_text_file


def plan_installed_packages(
    env_dir: Path, requirements_file: Path, *, timeout: float = 60.0
) -> PackagePlan:
    """Judge a requirements file against an environment without changing either.

    This is what the package step does when every requirement is met: one
    run of the environment's interpreter, then the comparison in this
    process. ``plan.to_install`` is empty exactly when the step would call no
    installer.

    Args:
        env_dir: The virtual environment folder.
        requirements_file: The requirements file, with any ``-r`` includes.
        timeout: Seconds the environment's interpreter may take.

    Raises:
        VerificationError: If the environment's interpreter cannot run.
        OSError: If the requirements file cannot be read.
    """
    text = read_text_file(requirements_file)
    parsed = parse_requirements(text, requirements_file.name, requirements_file.parent)
    probe = probe_interpreter(interpreter_path(env_dir), timeout)
    return plan_packages(parsed.lines, probe.distributions, probe.markers)

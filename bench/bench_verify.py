"""Verification with everything in place, against a no-op ``pip install -r``.

Ours: a whole ``verification_env.py`` run on a home whose application,
environment and packages are all in place, so it changes nothing. The package
step's duration comes from the state file. Reference: ``pip install -r`` of
the same requirements into the same environment, which has nothing to do.
"""

from __future__ import annotations

import logging

from bench.data import publish, write_tree
from bench.model import BenchContext, BenchResult, Check, Row, Stats
from bench.processes import run_measured
from bench.servers import Middleware
from bench.timing import paired_ratio, repeat
from bench.toolkit import (
    free_service_ports,
    script_env,
    step_durations,
    update_command,
    verification_command,
)
from bench.wheels import build_wheelhouse
from codemate_setup.state import Phase
from codemate_setup.verify.environment import interpreter_path

logger = logging.getLogger(__name__)

NAME = "verify"
TITLE = "Verification with everything in place"
PACKAGES = 20
QUICK_PACKAGES = 3
APP_FILES = 1000
QUICK_APP_FILES = 20
APP_FILE_BYTES = 4096
VERSION = "1.0.0"
PACKAGE_STEP = "Verifying Python packages"
MIN_PACKAGE_SPEEDUP = 5.0
MIN_WHOLE_SPEEDUP = 1.5


def run(ctx: BenchContext) -> BenchResult:
    """Measure a no-change verification against a no-op pip install."""
    packages = QUICK_PACKAGES if ctx.quick else PACKAGES
    app_files = QUICK_APP_FILES if ctx.quick else APP_FILES
    wheelhouse = ctx.workdir / "wheels"
    requirements = build_wheelhouse(wheelhouse, packages)

    source = ctx.workdir / "source"
    write_tree(source, app_files, APP_FILE_BYTES)
    (source / "initiate.py").write_text("print('CodeMate')\n")
    (source / "requirements.txt").write_text("\n".join(requirements) + "\n")
    releases = ctx.workdir / "releases"
    publish(source, VERSION, releases)

    home = ctx.workdir / "home"
    with Middleware(releases, ctx.python, ctx.root) as server:
        # Chosen once the middleware listens, so that none of them is its port.
        env = script_env() | free_service_ports()
        run_measured(update_command(ctx, VERSION, server.url, home), env=env)
        verify = verification_command(ctx, home, server.url, wheelhouse)
        # The first run builds the environment and installs the packages.
        run_measured(verify, env=env)

        pip = [
            str(interpreter_path(home / "environment")),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "-r",
            str(home / "requirements.txt"),
        ]

        def measure_once() -> dict[str, float]:
            ours = run_measured(verify, env=env)
            steps = step_durations(
                home / "setup_state.json", Phase.ENVIRONMENT_VERIFICATION
            )
            reference = run_measured(pip, env=env)
            return {
                "ours": ours.seconds,
                "package_step": steps[PACKAGE_STEP],
                "steps": sum(steps.values()),
                "pip": reference.seconds,
            }

        stats = repeat(measure_once, ctx, NAME)
    return _result(stats, packages, app_files)


def _result(stats: dict[str, Stats], packages: int, app_files: int) -> BenchResult:
    package_speedup = paired_ratio(stats["pip"], stats["package_step"])
    whole_speedup = paired_ratio(stats["pip"], stats["ours"])
    return BenchResult(
        name=NAME,
        title=TITLE,
        method=(
            f"A home holds an installed release of {app_files} files of "
            f"{APP_FILE_BYTES // 1024} KiB and a requirements file pinning "
            f"{packages} tiny local wheels (each depends on the previous one), "
            "and a first `verification_env.py --find-links WHEELS --no-index` "
            "run has built the environment and installed them. Each run then "
            "times a whole `verification_env.py` run with the same options, "
            "from process start to exit, which finds everything in place; the "
            f"package step is the duration of its step '{PACKAGE_STEP}' in the "
            "state file. The reference is `python -m pip install --no-index "
            "--find-links WHEELS -r HOME/requirements.txt` with the "
            "environment's own interpreter, which finds every requirement met."
        ),
        rows=[
            Row("ours: whole verification", stats["ours"], "s"),
            Row("ours: sum of the step durations", stats["steps"], "s"),
            Row("ours: package step", stats["package_step"], "s"),
            Row("pip install -r (no-op)", stats["pip"], "s", "reference"),
            Row("pip / package step (speedup)", package_speedup, "x", "ratio"),
            Row("pip / whole verification (speedup)", whole_speedup, "x", "ratio"),
        ],
        checks=[
            Check(
                "package step at least 5 times faster",
                package_speedup.median,
                MIN_PACKAGE_SPEEDUP,
                True,
            ),
            Check(
                "whole verification at least 1.5 times faster",
                whole_speedup.median,
                MIN_WHOLE_SPEEDUP,
                True,
            ),
        ],
        params={"packages": packages, "app_files": app_files},
    )

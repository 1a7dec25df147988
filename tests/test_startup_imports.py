"""What the scripts import before they do anything: start-up is part of every run."""

from __future__ import annotations

import subprocess
import sys

import pytest
from update_helpers import ROOT

# Printed by a child process after it ran a script's imports, not its main().
PROBE = """
import runpy, sys
runpy.run_path(sys.argv[1], run_name="probe")
print(" ".join(sorted(name for name in sys.modules if name == sys.argv[2])))
"""


@pytest.mark.parametrize(
    "script",
    ["update.py", "verification_env.py", "setup_orchestrator.py", "setup_tracker.py"],
)
def test_script_start_skips_filelock(script: str) -> None:
    # filelock is needed only where flock is missing, and importing it takes
    # about 10 ms of each start.
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / script), "filelock"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )

    assert probe.stdout.strip() == ""

"""kill -9 of the orchestrator at moments spread over a whole setup, then --resume.

Each case starts ``setup_orchestrator.py`` on a home with the old version
installed and verified, kills it with SIGKILL at one moment of the update to
the new version or of the verification that follows, and then checks:

- every process of the setup exits; the phase child of an ``--isolated``
  setup whose orchestrator alone was killed stops itself within seconds;
- the install folder is byte for byte the old or the new published tree.
  The exception is a kill of the process that applied the update: it leaves
  an update journal for the next run, and every installed file is whole;
- the state file is valid JSON and reads as an interrupted setup;
- ``--resume`` completes the same setup with exit code 0, the install equals
  the new version exactly, and the state records the resume and any
  recovery of the killed run's transaction.

A setup started while the phase child of a killed orchestrator still runs
must exit with code 3 and leave the install alone.

Moments come from the state file (a phase or step reached, a tool running)
or from the ``CODEMATE_FAULT_PAUSE_AT`` test hook, which pauses the process
that applies the update at a named point of the transaction until the test
kills it or deletes the pause file.

Every process of a setup carries a variable with a value unique to its case,
so the processes are found by their environment. The tools of the
verification run in sessions of their own, so a process group does not
contain them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from orchestration import (
    EXAMPLES_DIR,
    child_env,
    orchestrator_command,
    published_snapshot,
    tree_snapshot,
)

from codemate_setup.middleware import MiddlewareHandle, start_middleware
from codemate_setup.publish import publish_release
from codemate_setup.state import Liveness, assess
from codemate_setup.testhooks import PAUSE_FILE_VARIABLE, PAUSE_VARIABLE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="finds the setup's processes by their environment in /proc",
    ),
]

# The wheelhouse fixture, shared by every module that uses it.
pytest_plugins = ["verify_fixtures"]

OLD, NEW = "2.9.0", "3.0.0"
REQUIREMENTS = {OLD: "cm-alpha==1.0\n", NEW: "cm-alpha==2.0\ncm-beta==1.0\n"}
# Files that change between the versions, so the update makes many moves.
CHANGED_FILES = 6
# Marks every process of one setup, with a value unique to each case.
RUN_MARK = "CODEMATE_TEST_SETUP_RUN"
# Seconds the phase child of an isolated setup may take to stop by itself.
CHILD_STOP_SECONDS = 10.0
# Logged by a phase child that noticed that its orchestrator was killed.
PARENT_EXIT_NOTICE = "exited: cancelling"
# Seconds a tool left by a killed in-process setup may take to end on its own.
TOOL_END_SECONDS = 60.0
# Seconds until a moment of the setup must have been reached.
MOMENT_TIMEOUT = 60.0


def release_source(root: Path, version: str) -> Path:
    source = root / "sources" / version
    shutil.copytree(EXAMPLES_DIR / version, source)
    (source / "requirements.txt").write_text(REQUIREMENTS[version])
    for i in range(CHANGED_FILES):
        module = source / "codemate" / "extra" / f"mod_{i}.py"
        module.parent.mkdir(parents=True, exist_ok=True)
        module.write_text(f"VERSION = {version!r}\nINDEX = {i}\n")
    return source


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example releases, with requirements from the test wheelhouse."""
    root = tmp_path_factory.mktemp("sweep")
    folder = root / "releases"
    for version in (OLD, NEW):
        publish_release(release_source(root, version), version, folder, durable=False)
    return folder


@pytest.fixture(scope="module")
def sweep_server(releases: Path) -> Iterator[MiddlewareHandle]:
    handle = start_middleware(releases)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def installed_home(
    tmp_path_factory: pytest.TempPathFactory,
    sweep_server: MiddlewareHandle,
    wheelhouse: Path,
) -> Path:
    """A home with the old version installed and its environment built."""
    home = tmp_path_factory.mktemp("installed") / "home"
    done = Setup.start(home, OLD, sweep_server.url, wheelhouse, isolated=False)
    assert done.finish() == 0, done.output()
    return home


@pytest.fixture
def home(tmp_path: Path, installed_home: Path) -> Path:
    """A copy of the installed home for one case."""
    copy = tmp_path / "home"
    shutil.copytree(installed_home, copy, symlinks=True)
    return copy


@dataclass
class Setup:
    """One ``setup_orchestrator.py`` process, in a session of its own."""

    process: subprocess.Popen
    home: Path
    mark: str
    log: Path

    @classmethod
    def start(
        cls,
        home: Path,
        version: str,
        url: str,
        wheelhouse: Path,
        *extra: str,
        isolated: bool,
        env: dict[str, str] | None = None,
    ) -> Setup:
        mark = uuid.uuid4().hex
        args = [version, "--middleware-url", url, "--home", str(home), "--yes"]
        args += ["--find-links", str(wheelhouse), *extra]
        if isolated:
            args.append("--isolated")
        environ = child_env(**{RUN_MARK: mark}, **(env or {}))
        # Packages come from the wheelhouse only, never from an index.
        environ.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        home.parent.mkdir(parents=True, exist_ok=True)
        log = home.parent / f"setup-{mark}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                orchestrator_command(*args),
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(process, home, mark, log)

    def finish(self, timeout: float = 300) -> int:
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def processes(self) -> list[psutil.Process]:
        """Return the live processes that carry this setup's mark."""
        found = []
        for process in psutil.process_iter():
            try:
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
                if process.environ().get(RUN_MARK) == self.mark:
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def wait_for_no_process(self, timeout: float) -> list[str]:
        """Wait until no process of the setup runs; return those left."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.processes()
            if not left or time.monotonic() > deadline:
                return [describe(process) for process in left]
            time.sleep(0.05)


def describe(process: psutil.Process) -> str:
    try:
        return f"pid {process.pid}: {' '.join(process.cmdline())}"
    except psutil.Error:
        return f"pid {process.pid}"


# --- moments -------------------------------------------------------------


def state_or_none(home: Path) -> dict[str, Any] | None:
    try:
        return json.loads((home / "setup_state.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def phase_doc(document: dict[str, Any], name: str) -> dict[str, Any]:
    return document["phases"][name]


def tool_records(home: Path) -> list[str]:
    """Return the labels of the tools that the verification recorded as running."""
    labels = []
    for path in (home / "children").glob("*.json"):
        try:
            labels.append(json.loads(path.read_text())["label"])
        except (OSError, ValueError, KeyError):
            continue
    return labels


@dataclass(frozen=True)
class Moment:
    """When to kill: a pause point of the transaction, or a state reached.

    ``cancelled_phase`` names the phase that the child of an isolated setup
    must record as cancelled when only the orchestrator is killed. It is set
    only where the child runs longer than the time it has to notice the kill.
    """

    pause_at: str | None = None
    reached: Callable[[dict[str, Any], Path], bool] | None = None
    cancelled_phase: str | None = None


def update_started(document: dict[str, Any], _home: Path) -> bool:
    return phase_doc(document, "codebase_update")["status"] != "pending"


def verification_started(document: dict[str, Any], _home: Path) -> bool:
    return phase_doc(document, "environment_verification")["status"] != "pending"


def step_with_tool(step: str, label: str) -> Callable[[dict[str, Any], Path], bool]:
    def reached(document: dict[str, Any], home: Path) -> bool:
        phase = phase_doc(document, "environment_verification")
        return phase["current_step"] == step and label in tool_records(home)

    return reached


installing_packages = step_with_tool("Verifying Python packages", "pip install")
building_environment = step_with_tool(
    "Initializing environment manager", "python -m venv"
)


# In the order of a setup. The update makes 22 moves: backups 1-10, a new
# folder 11, and placed files 12-22.
MOMENTS = {
    "update-started": Moment(reached=update_started),
    "journal-written": Moment(
        pause_at="apply:after-journal", cancelled_phase="codebase_update"
    ),
    "backups-done": Moment(
        pause_at="apply:after-move:10", cancelled_phase="codebase_update"
    ),
    "placing-files": Moment(
        pause_at="apply:after-move:16", cancelled_phase="codebase_update"
    ),
    "version-written": Moment(pause_at="commit:after-version"),
    "committed": Moment(pause_at="commit:after-mark"),
    "verification-started": Moment(reached=verification_started),
    "installing-packages": Moment(reached=installing_packages),
}

KILL_MODES = ("in-process", "isolated-orchestrator", "isolated-group")


def start_and_kill(
    home: Path,
    url: str,
    wheelhouse: Path,
    moment: Moment,
    mode: str,
    *,
    hold: bool = False,
) -> Setup:
    """Start the update to the new version and SIGKILL it at ``moment``.

    With ``hold``, a process paused at ``moment`` stays paused until the
    caller deletes ``pause_path(home)``.
    """
    env = {}
    pause_file = pause_path(home)
    if moment.pause_at is not None:
        env = {PAUSE_VARIABLE: moment.pause_at, PAUSE_FILE_VARIABLE: str(pause_file)}
    setup = Setup.start(
        home, NEW, url, wheelhouse, isolated=mode != "in-process", env=env
    )

    deadline = time.monotonic() + MOMENT_TIMEOUT
    while not moment_reached(moment, setup, pause_file):
        assert setup.process.poll() is None, (
            f"the setup ended before the moment: {setup.output()}"
        )
        assert time.monotonic() < deadline, "the moment was never reached"
        time.sleep(0.005)

    if mode == "isolated-group":
        os.killpg(setup.process.pid, signal.SIGKILL)
    else:
        os.kill(setup.process.pid, signal.SIGKILL)
    setup.process.wait(timeout=30)
    if hold:
        return setup
    if mode == "isolated-orchestrator" and pause_file.exists():
        # The paused update child goes on once it noticed the kill.
        assert child_noticed_kill(home), "the child missed the orchestrator's kill"
    pause_file.unlink(missing_ok=True)
    return setup


def child_noticed_kill(home: Path) -> bool:
    """Wait until a phase child logs that its orchestrator exited."""
    deadline = time.monotonic() + CHILD_STOP_SECONDS
    while time.monotonic() < deadline:
        for log in (home / "logs").glob("*.log"):
            if PARENT_EXIT_NOTICE in log.read_text(errors="replace"):
                return True
        time.sleep(0.02)
    return False


def pause_path(home: Path) -> Path:
    return home.parent / "paused"


def moment_reached(moment: Moment, setup: Setup, pause_file: Path) -> bool:
    if moment.pause_at is not None:
        return pause_file.exists()
    document = state_or_none(setup.home)
    if document is None or document.get("pid") != setup.process.pid:
        # The state of an earlier setup, before this one wrote its own.
        return False
    return moment.reached(document, setup.home)


# --- checks --------------------------------------------------------------


def install_is(home: Path, releases: Path, version: str) -> bool:
    return tree_snapshot(home / "app") == published_snapshot(releases, version)


def assert_killed_run_left(
    setup: Setup, releases: Path, moment: Moment, mode: str
) -> bool:
    """Check what the kill left; return whether a journal awaits recovery."""
    limit = CHILD_STOP_SECONDS if mode == "isolated-orchestrator" else TOOL_END_SECONDS
    left = setup.wait_for_no_process(limit)
    assert left == [], f"processes of the killed setup still run: {left}"

    document = json.loads((setup.home / "setup_state.json").read_text())
    assert assess(document) is Liveness.INTERRUPTED

    journal = (setup.home / "journal.json").exists()
    if mode == "isolated-orchestrator":
        # The update child was not killed: it finished or undid its moves.
        assert not journal
        if moment.cancelled_phase is not None:
            phase = phase_doc(document, moment.cancelled_phase)
            assert phase["status"] == "failed"
            assert "cancelled" in phase["error"]
        if moment.cancelled_phase == "codebase_update":
            assert install_is(setup.home, releases, OLD)
    if not journal:
        old_or_new = install_is(setup.home, releases, OLD) or install_is(
            setup.home, releases, NEW
        )
        assert old_or_new, "the install folder is a mix of the two versions"
    else:
        # Moves in flight: the next run finishes or undoes them, and until then
        # each file is whole, as one of the two versions has it.
        assert torn_files(setup.home, releases) == []
    return journal


def torn_files(home: Path, releases: Path) -> list[str]:
    """Return the installed files that neither version has as they are."""
    old = published_snapshot(releases, OLD)
    new = published_snapshot(releases, NEW)
    installed = tree_snapshot(home / "app")
    return [
        path
        for path, content in installed.items()
        if content not in (old.get(path), new.get(path))
    ]


def resume(home: Path, url: str, wheelhouse: Path, mode: str) -> Setup:
    setup = Setup.start(
        home, NEW, url, wheelhouse, "--resume", isolated=mode != "in-process"
    )
    assert setup.finish() == 0, setup.output()
    return setup


def assert_resumed_to_new(
    home: Path, releases: Path, killed_id: str, journal_left: bool
) -> None:
    document = json.loads((home / "setup_state.json").read_text())
    assert document["overall_status"] == "completed"
    assert document["setup_id"] == killed_id
    assert len(document.get("resumed_at", [])) == 1
    for name in ("codebase_update", "environment_verification"):
        assert phase_doc(document, name)["status"] == "completed", name
    if journal_left:
        recovery = phase_doc(document, "codebase_update").get("recovery") or {}
        assert recovery.get("action") in ("rolled_back", "completed")

    assert install_is(home, releases, NEW)
    assert (home / "version.txt").read_text().strip() == NEW
    assert not (home / "journal.json").exists()
    site = next((home / "environment" / "lib").glob("python*/site-packages"))
    assert (site / "cm_alpha-2.0.dist-info").is_dir()
    assert (site / "cm_beta-1.0.dist-info").is_dir()


# --- tests ---------------------------------------------------------------


@pytest.mark.parametrize("mode", KILL_MODES)
@pytest.mark.parametrize("moment", list(MOMENTS), ids=list(MOMENTS))
def test_kill_at_moment_then_resume(
    home: Path,
    releases: Path,
    sweep_server: MiddlewareHandle,
    wheelhouse: Path,
    moment: str,
    mode: str,
) -> None:
    when = MOMENTS[moment]
    killed = start_and_kill(home, sweep_server.url, wheelhouse, when, mode)
    journal_left = assert_killed_run_left(killed, releases, when, mode)
    killed_id = json.loads((home / "setup_state.json").read_text())["setup_id"]

    resumed = resume(home, sweep_server.url, wheelhouse, mode)

    assert_resumed_to_new(home, releases, killed_id, journal_left)
    assert resumed.processes() == []


@pytest.mark.parametrize("mode", ["isolated-orchestrator", "isolated-group"])
def test_kill_while_environment_rebuilds(
    home: Path,
    releases: Path,
    sweep_server: MiddlewareHandle,
    wheelhouse: Path,
    mode: str,
) -> None:
    # An environment without its interpreter is rebuilt: moved aside, created anew.
    for interpreter in (home / "environment" / "bin").glob("python*"):
        interpreter.unlink()
    moment = Moment(
        reached=building_environment, cancelled_phase="environment_verification"
    )

    killed = start_and_kill(home, sweep_server.url, wheelhouse, moment, mode)
    assert_killed_run_left(killed, releases, moment, mode)
    killed_id = json.loads((home / "setup_state.json").read_text())["setup_id"]

    resume(home, sweep_server.url, wheelhouse, mode)

    assert_resumed_to_new(home, releases, killed_id, journal_left=False)
    leftovers = sorted(p.name for p in home.iterdir() if p.name.startswith("."))
    assert leftovers == []
    document = json.loads((home / "setup_state.json").read_text())
    checks = phase_doc(document, "environment_verification")["checks"]
    statuses = {check["check"]: check["status"] for check in checks}
    if mode == "isolated-group":
        # The killed child left the old environment aside, and the resumed
        # verification put it back before it rebuilt it.
        assert statuses.get("environment.rebuild") == "fixed"


def test_next_setup_waits_for_stopping_child(
    home: Path,
    releases: Path,
    sweep_server: MiddlewareHandle,
    wheelhouse: Path,
) -> None:
    moment = MOMENTS["backups-done"]
    killed = start_and_kill(
        home, sweep_server.url, wheelhouse, moment, "isolated-orchestrator", hold=True
    )
    # The update child is still paused in its apply step, so it still runs.
    early = Setup.start(
        home, NEW, sweep_server.url, wheelhouse, "--resume", isolated=True
    )
    early_code = early.finish()
    noticed = child_noticed_kill(home)
    pause_path(home).unlink()
    left = killed.wait_for_no_process(CHILD_STOP_SECONDS)
    killed_id = json.loads((home / "setup_state.json").read_text())["setup_id"]

    assert early_code == 3, early.output()
    assert "still holds the setup lock" in early.output()
    assert noticed
    assert left == []
    assert install_is(home, releases, OLD)

    resume(home, sweep_server.url, wheelhouse, "isolated-orchestrator")

    assert_resumed_to_new(home, releases, killed_id, journal_left=False)

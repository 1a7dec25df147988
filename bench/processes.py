"""Child processes timed from start to exit, with their peak memory."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Lines of a failed command's output shown in the error.
SHOWN_OUTPUT_LINES = 20
MEMORY_SAMPLE_SECONDS = 0.01


@dataclass(frozen=True)
class ProcessRun:
    """One finished child process.

    Attributes:
        seconds: Wall time from start to exit.
        max_rss_bytes: Peak resident memory from ``wait4``. On Linux it also
            counts the memory image the child had before ``exec``, which is the
            parent's own when the child starts with ``vfork``, so it is at
            least the parent's peak in that case.
        cpu_seconds: User plus system CPU time of the child and the children
            it waited for.
        sampled_peak_bytes: The child's own peak resident memory (``VmHWM``),
            read every ``MEMORY_SAMPLE_SECONDS`` until it exits, so a peak in
            its last moments can be missed; 0 when not sampled.
    """

    seconds: float
    max_rss_bytes: int
    cpu_seconds: float
    sampled_peak_bytes: int = 0


class CommandFailed(RuntimeError):
    """A measured command exited with an error; the message shows its output."""


def run_measured(
    command: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1800.0,
    sample_memory: bool = False,
) -> ProcessRun:
    """Run ``command`` to completion and measure it.

    The output goes to a temp file rather than a pipe, because a child that
    fills an unread pipe stalls while it is timed.

    Args:
        command: The program and its arguments.
        cwd: Working folder of the child.
        env: Environment of the child; this process's by default.
        timeout: Seconds after which the child is killed.
        sample_memory: Read the child's peak resident memory while it runs
            (Linux only).

    Raises:
        CommandFailed: If the command exits with a non-zero status.
        TimeoutError: If it runs longer than ``timeout`` seconds; it is killed.
    """
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [os.fspath(part) for part in command],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        sampler = _PeakSampler(process.pid) if sample_memory else None
        status, usage = _wait(process, timeout)
        seconds = time.perf_counter() - started
        sampled_peak = sampler.stop() if sampler else 0
        log.seek(0)
        output = log.read().decode("utf-8", "replace")

    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "\n".join(output.splitlines()[-SHOWN_OUTPUT_LINES:])
        command_line = " ".join(os.fspath(part) for part in command)
        raise CommandFailed(f"{command_line} failed with exit code {code}:\n{tail}")

    return ProcessRun(
        seconds=seconds,
        # Linux reports ru_maxrss in KiB.
        max_rss_bytes=usage.ru_maxrss * 1024,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        sampled_peak_bytes=sampled_peak,
    )


class _PeakSampler:
    """A thread that reads a process's ``VmHWM`` until ``stop`` is called."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak

    def _sample(self) -> None:
        status_file = Path(f"/proc/{self.pid}/status")
        while not self._stop.is_set():
            try:
                text = status_file.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    # The value is in kB, meaning KiB.
                    self.peak = max(self.peak, int(line.split()[1]) * 1024)
            self._stop.wait(MEMORY_SAMPLE_SECONDS)


def _wait(
    process: subprocess.Popen[bytes], timeout: float
) -> tuple[int, os.struct_rusage]:
    # A blocking wait4 returns at the exit itself; the timer only kills a
    # child that hangs, and the wait then returns as usual.
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()

    # The child is reaped: with returncode set, Popen does not wait for it again.
    process.returncode = os.waitstatus_to_exitcode(status)
    if timed_out.is_set():
        raise TimeoutError(
            f"{process.args} did not finish within {timeout:g} s and was killed"
        )
    return status, usage

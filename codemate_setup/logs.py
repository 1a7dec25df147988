"""Logging set-up: a DEBUG log file per run under the home's ``logs/``."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

# Log files kept per script name; older ones are deleted at the start of a run.
KEEP_LOG_FILES = 20

_FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(process)d]: %(message)s"


def configure_run_logging(
    logs_dir: Path, script: str, *, verbose: bool = False
) -> Path | None:
    """Send DEBUG logging to a new file in ``logs_dir`` and warnings to stderr.

    Args:
        logs_dir: Folder for log files; created if missing.
        script: Short name that prefixes the file, such as ``update``.
        verbose: Show INFO messages on the terminal too.

    Returns:
        The path of the new log file, or None when the folder is not writable
        (the run goes on with terminal logging only).
    """
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        if getattr(handler, "_codemate_handler", False):
            root.removeHandler(handler)
            handler.close()

    console = logging.StreamHandler()
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    console._codemate_handler = True  # type: ignore[attr-defined]
    root.addHandler(console)

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    log_path = logs_dir / f"{script}-{stamp}-{os.getpid()}.log"
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
        _prune_logs(logs_dir, script)
        file_handler = logging.FileHandler(log_path, encoding="utf-8")
    except OSError as e:
        logging.getLogger(__name__).warning(
            "cannot write a log file in %s (%s); logging to the terminal only",
            logs_dir,
            e,
        )
        return None

    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    file_handler._codemate_handler = True  # type: ignore[attr-defined]
    root.addHandler(file_handler)

    # urllib3 logs every connection at DEBUG; its warnings are enough.
    logging.getLogger("urllib3").setLevel(logging.INFO)
    return log_path


def _prune_logs(logs_dir: Path, script: str) -> None:
    old_logs = sorted(logs_dir.glob(f"{script}-*.log"), key=lambda p: p.stat().st_mtime)
    for path in old_logs[: max(0, len(old_logs) - (KEEP_LOG_FILES - 1))]:
        with contextlib.suppress(OSError):
            path.unlink()

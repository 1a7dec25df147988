"""Live progress on the terminal, drawn from the state file.

The display reads the state file like any other client, so it shows the same
thing for in-process and isolated phases. On a terminal it draws bars with
``rich``; otherwise it prints one plain line per step change.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from codemate_setup.errors import StateFileError
from codemate_setup.state.schema import FINISHED_OVERALL, Phase
from codemate_setup.state.store import StateStore

REFRESH_SECONDS = 0.2
FINISHED_STATUSES = {status.value for status in FINISHED_OVERALL}


class ProgressDisplay:
    """Polls the state file in a thread and renders each change.

    Args:
        state_file: The state file to watch.
        stream: Where to draw; a terminal gets live bars.
    """

    def __init__(self, state_file: Path, stream: TextIO | None = None) -> None:
        self._store = StateStore(state_file)
        self._stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: set[tuple[str, str, str]] = set()

    def __enter__(self) -> ProgressDisplay:
        target = self._run_live if self._stream.isatty() else self._run_plain
        self._thread = threading.Thread(target=target, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _read(self) -> dict[str, Any] | None:
        try:
            return self._store.read()
        except StateFileError:
            return None

    def _run_plain(self) -> None:
        while True:
            stopping = self._stop.wait(REFRESH_SECONDS)
            document = self._read()
            if document is not None:
                self._print_changes(document)
            if stopping:
                return

    def _print_changes(self, document: dict[str, Any]) -> None:
        self._print_phase_changes(document)
        status = document["overall_status"]
        key = ("setup", status, "")
        if status in FINISHED_STATUSES and key not in self._seen:
            self._seen.add(key)
            print(
                f"[{document['overall_progress']:3d}%] setup {status}",
                file=self._stream,
                flush=True,
            )

    def _print_phase_changes(self, document: dict[str, Any]) -> None:
        for phase in Phase:
            phase_doc = document["phases"][phase.value]
            key = (phase.value, phase_doc["status"], phase_doc["current_step"])
            if key in self._seen or phase_doc["status"] == "pending":
                continue
            self._seen.add(key)
            print(
                f"[{document['overall_progress']:3d}%] {phase.value}: "
                f"{phase_doc['status']} - {phase_doc['current_step']}",
                file=self._stream,
                flush=True,
            )

    def _run_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self._stream)
        with Live(console=console, refresh_per_second=1 / REFRESH_SECONDS) as live:
            while True:
                stopping = self._stop.wait(REFRESH_SECONDS)
                document = self._read()
                if document is not None:
                    live.update(_render_table(document))
                if stopping:
                    return


def _render_table(document: dict[str, Any]) -> Any:
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    table = Table.grid(padding=(0, 1))
    table.add_row(
        "setup",
        ProgressBar(total=100, completed=document["overall_progress"], width=30),
        f"{document['overall_progress']:3d}%  {document['overall_status']}",
    )
    for phase in Phase:
        phase_doc = document["phases"][phase.value]
        table.add_row(
            phase.value,
            ProgressBar(total=100, completed=phase_doc["progress"], width=30),
            f"{phase_doc['progress']:3d}%  {phase_doc['status']}: "
            f"{phase_doc['current_step']}{_detail_text(phase_doc.get('detail'))}",
        )
    return table


def _detail_text(detail: object) -> str:
    if not isinstance(detail, dict):
        return ""
    if detail.get("bytes_total"):
        done = detail.get("bytes_done") or 0
        rate = detail.get("bytes_per_second") or 0
        return (
            f"  {done / 2**20:.1f}/{detail['bytes_total'] / 2**20:.1f} MiB"
            f" at {rate / 2**20:.1f} MiB/s"
        )
    if detail.get("items_total"):
        return f"  {detail.get('items_done', 0)}/{detail['items_total']}"
    return ""

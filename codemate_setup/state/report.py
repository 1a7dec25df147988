"""Human-readable rendering of a state document for terminals."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path
from typing import Any

from codemate_setup.config import home_flag
from codemate_setup.state.liveness import (
    Liveness,
    assess,
    heartbeat_age,
    owner_alive,
)
from codemate_setup.state.schema import Phase


def describe_status(document: dict[str, Any]) -> str:
    """Return the overall status as a reader should see it.

    A "running" setup whose process is gone reads "interrupted".
    """
    if assess(document) is Liveness.INTERRUPTED:
        return "interrupted"
    return str(document.get("overall_status"))


def format_state(document: dict[str, Any], home: Path | None = None) -> str:
    """Render a state document as a short multi-line report.

    ``home`` is the folder of the state file; the commands that the report
    suggests name it when it is not the default home.
    """
    status = describe_status(document)
    lines = [
        f"Setup {document.get('setup_id')}: {status}, "
        f"{document.get('overall_progress')}% overall",
    ]

    target = document.get("target_version")
    if target:
        lines.append(f"  target version: {target}")

    if status == "interrupted":
        lines.append(_interrupted_line(document, home))

    for phase in Phase:
        lines.extend(_format_phase(phase.value, document["phases"][phase.value]))

    if document.get("error_details"):
        lines.append(f"  error: {document['error_details']}")
    lines.append(f"  updated: {document.get('timestamp')}")
    return "\n".join(lines)


def _interrupted_line(document: dict[str, Any], home: Path | None) -> str:
    resume = _resume_command(document, home)
    pid = document.get("pid")
    age = heartbeat_age(document)
    host = document.get("hostname")
    on_this_host = not host or host == socket.gethostname()
    if age is not None and on_this_host and owner_alive(document):
        # A stopped (SIGSTOP) or hung process keeps the setup lock.
        return (
            f"  process {pid} still exists but has not written for {age:.0f} s, "
            f"so it is stopped or hung; resume it (kill -CONT {pid}) or end it "
            f"(kill {pid}), then continue with `{resume}`"
        )
    seen = f", last heartbeat {age:.0f} s ago" if age is not None else ""
    return (
        f"  process {pid} is no longer running{seen}; continue with `{resume}`, "
        "adding the --middleware-url of the interrupted command if it had one"
    )


def _resume_command(document: dict[str, Any], home: Path | None) -> str:
    target = document.get("target_version")
    version = f" {shlex.quote(target)}" if isinstance(target, str) and target else ""
    where = home_flag(home) if home is not None else ""
    return f"setup_orchestrator.py{version} --resume{where}"


def _format_phase(name: str, phase_doc: dict[str, Any]) -> list[str]:
    done = len(phase_doc.get("steps_completed") or [])
    lines = [
        f"  {name}: {phase_doc['status']} {phase_doc['progress']}% "
        f"({done}/{phase_doc['steps_total']} steps) - {phase_doc['current_step']}"
    ]

    detail = phase_doc.get("detail")
    if isinstance(detail, dict) and detail:
        lines.append(f"    {_format_detail(detail)}")

    for warning in phase_doc.get("warnings") or []:
        lines.append(f"    warning: {warning}")
    for fallback in phase_doc.get("fallbacks") or []:
        lines.append(f"    fallback: {fallback}")
    return lines


def _format_detail(detail: dict[str, Any]) -> str:
    if "bytes_total" in detail or "bytes_done" in detail:
        unit, size = _byte_unit(detail.get("bytes_total"))
        done = _format_in_unit(detail.get("bytes_done"), size)
        total = _format_in_unit(detail.get("bytes_total"), size)
        rate = _format_in_unit(detail.get("bytes_per_second"), size)
        eta = detail.get("eta_seconds")
        text = f"{done} of {total} {unit} at {rate} {unit}/s"
        if isinstance(eta, (int, float)):
            text += f", {eta:.0f} s left"
        return text
    if "items_total" in detail:
        return f"{detail.get('items_done')} of {detail.get('items_total')} items"
    return ", ".join(f"{key}={value}" for key, value in sorted(detail.items()))


def _byte_unit(total: object) -> tuple[str, int]:
    """Pick KiB for a download under 1 MiB, which MiB would show as 0.0."""
    if isinstance(total, (int, float)) and total < 1024 * 1024:
        return "KiB", 1024
    return "MiB", 1024 * 1024


def _format_in_unit(value: object, size: int) -> str:
    if isinstance(value, (int, float)):
        return f"{value / size:.1f}"
    return "?"

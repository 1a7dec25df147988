"""Summarize a run of scripts/real_world_run.sh as Markdown tables.

Usage::

    python scripts/real_world_summary.py WORK_DIR > summary.md

Reads only WORK_DIR/results, which the run script writes; a file missing
from an incomplete run shows as "-" or "not run". Absolute paths under
WORK_DIR are shown as ``$WORK/...`` so that the output can be pasted into a
document. Exit codes: 0 written, 2 WORK_DIR has no results folder.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

DOWNLOAD_LINE = re.compile(
    r" GET /download/v[^/ ]+/(?P<path>\S+) (?P<status>\d{3}) (?P<bytes>\d+) bytes"
)
REQUEST_LINE = re.compile(
    r" (?P<method>GET|HEAD) (?P<target>\S+) (?P<status>\d{3}) (?P<bytes>\d+) bytes"
)
STATS_LINE = re.compile(r"download finished: DownloadStats\((?P<fields>[^)]*)\)")
PLAN_LINE = re.compile(r"plan for \S+: (?P<plan>[^\n]*)")


class Summary:
    """The results folder of one run and the two versions it covers."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.results = work / "results"
        self.machine = key_values(self.results / "machine.txt")
        self.old = self.machine.get("old", "")
        self.new = self.machine.get("new", "")

    def read_text(self, name: str) -> str:
        """Return a results file's text, or an empty string when it is missing."""
        path = self.results / name
        if not path.is_file():
            return ""
        return path.read_text(encoding="utf-8", errors="replace")

    def load_json(self, name: str) -> Any:
        """Return a results file parsed as JSON, or None when missing or invalid."""
        try:
            return json.loads(self.read_text(name))
        except ValueError:
            return None

    def hide(self, value: object) -> str:
        """Return ``value`` as text with the work folder replaced by ``$WORK``."""
        return str(value).replace(str(self.work), "$WORK")


def key_values(path: Path) -> dict[str, str]:
    """Read a file of KEY=VALUE lines. A missing file gives an empty dict."""
    if not path.is_file():
        return {}
    pairs = (line.partition("=") for line in path.read_text().splitlines())
    return {key: value for key, _, value in pairs if key}


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Render a Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def seconds_between(start: str | None, end: str | None) -> str:
    """Return the seconds between two ISO 8601 timestamps, to 0.01 s."""
    if not start or not end:
        return "-"
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return f"{delta.total_seconds():.2f}"


def machine_section(summary: Summary) -> str:
    """Render the machine and toolkit revision as a table."""
    keys = ["os", "kernel", "cpu", "cores", "memory_kib", "python", "pip", "uv"]
    keys += ["toolkit_commit", "toolkit_uncommitted_paths", "started_at"]
    rows = [(key, summary.machine.get(key, "-")) for key in keys]
    return "## Machine\n\n" + table(["item", "value"], rows)


def command_names(summary: Summary) -> list[str]:
    """List the timed commands in the order the run script runs them."""
    old, new = summary.old, summary.new
    return [
        f"download-{old}",
        f"download-{new}",
        f"requirements-{old}",
        f"requirements-{new}",
        f"publish-{old}",
        f"publish-{new}",
        f"install-{old}",
        f"update-{new}",
        "verify-again",
        "diff-app",
        "diff-modes",
        "app-version",
        "app-offline",
        "diff-app-after-run",
    ]


def commands_section(summary: Summary) -> str:
    """Render exit code, wall time and peak memory of each timed command."""
    rows = []
    for name in command_names(summary):
        timing = key_values(summary.results / f"{name}.time")
        if not timing:
            rows.append((name, "not run", "-", "-"))
            continue
        rss = timing.get("max_rss_kb", "")
        rss_mib = f"{int(rss) / 1024:.0f}" if rss.isdigit() else "-"
        elapsed = float(timing.get("elapsed_seconds") or "nan")
        rows.append((name, timing.get("exit_code", "-"), f"{elapsed:.2f}", rss_mib))
    headers = ["command", "exit code", "wall seconds", "peak RSS MiB"]
    return "## Commands\n\n" + table(headers, rows)


def steps_section(summary: Summary) -> str:
    """Render the step durations of the install and the update side by side."""
    runs = [
        (
            f"install {summary.old}",
            summary.load_json(f"state-install-{summary.old}.json"),
        ),
        (
            f"update {summary.new}",
            summary.load_json(f"state-update-{summary.new}.json"),
        ),
    ]
    rows: list[list[object]] = []
    for phase in ("codebase_update", "environment_verification"):
        durations = [_step_durations(state, phase) for _, state in runs]
        steps = list(dict.fromkeys(step for d in durations for step in d))
        for step in steps:
            rows.append([phase, step, *(d.get(step, "-") for d in durations)])
        totals = [_phase_seconds(state, phase) for _, state in runs]
        rows.append([phase, "**phase total**", *totals])

    headers = ["phase", "step", *(f"{label} (s)" for label, _ in runs)]
    return "## Step timings (from step_timings in the state file)\n\n" + table(
        headers, rows
    )


def _step_durations(state: Any, phase: str) -> dict[str, str]:
    if not state:
        return {}
    timings = state["phases"][phase].get("step_timings") or []
    return {t["step"]: f"{t['duration_seconds']:.3f}" for t in timings}


def _phase_seconds(state: Any, phase: str) -> str:
    if not state:
        return "-"
    phase_state = state["phases"][phase]
    return seconds_between(phase_state.get("start_time"), phase_state.get("end_time"))


def listing_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[str]]:
    """Compare two installed listings: added, edited (hash or mode), deleted."""
    old_files, new_files = old.get("files", {}), new.get("files", {})
    edited = [
        path
        for path in sorted(set(old_files) & set(new_files))
        if (old_files[path]["sha256"], old_files[path]["mode"])
        != (new_files[path]["sha256"], new_files[path]["mode"])
    ]
    return {
        "added": sorted(set(new_files) - set(old_files)),
        "edited": edited,
        "deleted": sorted(set(old_files) - set(new_files)),
    }


def files_section(summary: Summary) -> str:
    """Render the update's file changes as seen by the publisher and the client."""
    manifest = summary.load_json(f"manifest-{summary.new}.json") or {}
    codebase = manifest.get("codebase", {})
    published = {
        "added": sorted(codebase.get("files_add", [])),
        "edited": sorted(codebase.get("files_edit", [])),
        "deleted": sorted(codebase.get("files_delete", [])),
    }
    old_listing = summary.load_json(f"installed-{summary.old}.json") or {}
    new_listing = summary.load_json(f"installed-{summary.new}.json") or {}
    installed = listing_changes(old_listing, new_listing)

    rows = [
        (
            kind,
            len(published[kind]),
            len(installed[kind]),
            "yes" if published[kind] == installed[kind] else "no",
        )
        for kind in ("added", "edited", "deleted")
    ]
    unchanged = (
        len(new_listing.get("files", {}))
        - len(installed["added"])
        - len(installed["edited"])
    )
    rows.append(("unchanged", "-", unchanged, "-"))
    headers = [
        "files",
        f"manifest {summary.new} (publisher)",
        "installed listings (client)",
        "same paths",
    ]
    parts = ["## Files changed by the update", "", table(headers, rows)]

    new_files = new_listing.get("files", {})
    changed = installed["added"] + installed["edited"]
    empty = [path for path in changed if new_files[path]["size"] == 0]
    changed_bytes = sum(new_files[path]["size"] for path in changed)
    installed_empty = [
        path
        for path, entry in old_listing.get("files", {}).items()
        if entry["size"] == 0
    ]
    parts += ["", _transfer_table(summary)]
    parts += [
        "",
        f"The update changed {len(changed)} files of {changed_bytes} bytes in all. "
        f"Empty files: {len(installed_empty)} in release {summary.old}, "
        f"{len(empty)} among the changed files of {summary.new}. The updater "
        "creates an empty file without a request, so it counts in "
        "files_downloaded but not in the middleware's download requests.",
    ]
    parts += ["", "Edited files: " + ", ".join(f"`{p}`" for p in installed["edited"])]
    parts += ["", "Top folders of the changed paths (added, edited, deleted):", ""]
    parts.append(
        table(["folder", "added", "edited", "deleted"], _folder_rows(installed))
    )
    return "\n".join(parts)


def _transfer_table(summary: Summary) -> str:
    rows = []
    for name in (f"install-{summary.old}", f"update-{summary.new}"):
        downloads = [
            match
            for line in summary.read_text(f"{name}.middleware.log").splitlines()
            if (match := DOWNLOAD_LINE.search(line))
        ]
        others = [
            line
            for line in summary.read_text(f"{name}.middleware.log").splitlines()
            if REQUEST_LINE.search(line) and not DOWNLOAD_LINE.search(line)
        ]
        stats = _download_stats(summary, name)
        rows.append(
            (
                name,
                len(downloads),
                sum(int(m["bytes"]) for m in downloads),
                len(others),
                stats.get("files_downloaded", "-"),
                stats.get("bytes_downloaded", "-"),
                stats.get("seconds", "-"),
                _plan(summary, name),
            )
        )
    headers = [
        "run",
        "download requests (middleware log)",
        "body bytes sent",
        "other requests",
        "files_downloaded (updater)",
        "bytes_downloaded (updater)",
        "download seconds (updater)",
        "plan (updater log)",
    ]
    return table(headers, rows)


def _run_log(summary: Summary, name: str) -> str:
    """Return the setup log of a run, found through its --json output."""
    result = summary.load_json(f"{name}.out") or {}
    return summary.read_text(Path(result.get("log_file") or "missing").name)


def _download_stats(summary: Summary, name: str) -> dict[str, str]:
    match = STATS_LINE.search(_run_log(summary, name))
    if match is None:
        return {}

    pairs = (item.strip().partition("=") for item in match["fields"].split(","))
    stats = {key: value for key, _, value in pairs}
    if "seconds" in stats:
        stats["seconds"] = f"{float(stats['seconds']):.3f}"
    return stats


def _plan(summary: Summary, name: str) -> str:
    match = PLAN_LINE.search(_run_log(summary, name))
    return match["plan"] if match else "-"


def _folder_rows(changes: dict[str, list[str]]) -> list[tuple[object, ...]]:
    folders: dict[str, list[int]] = {}
    for column, kind in enumerate(("added", "edited", "deleted")):
        for path in changes[kind]:
            folder = path.split("/")[0] if "/" in path else "(top level)"
            folders.setdefault(folder, [0, 0, 0])[column] += 1
    return [(folder, *counts) for folder, counts in sorted(folders.items())]


def packages_section(summary: Summary) -> str:
    """Render the requirements, the installed distributions and pip's sources."""
    old_requirements = _requirement_lines(
        summary.read_text(f"requirements-{summary.old}.txt")
    )
    new_requirements = _requirement_lines(
        summary.read_text(f"requirements-{summary.new}.txt")
    )
    parts = ["## Requirements and packages", ""]
    parts.append(
        table(
            [f"requirements.txt {summary.old}", f"requirements.txt {summary.new}"],
            _side_by_side(old_requirements, new_requirements),
        )
    )

    after_install = _freeze(summary.read_text("packages-after-install.txt"))
    after_update = _freeze(summary.read_text("packages-after-update.txt"))
    names = sorted(set(after_install) | set(after_update), key=str.lower)
    rows = [(n, after_install.get(n, "-"), after_update.get(n, "-")) for n in names]
    parts += ["", f"`pip list` in the environment ({len(names)} distributions):", ""]
    parts.append(
        table(
            [
                "distribution",
                f"after install {summary.old}",
                f"after update {summary.new}",
            ],
            rows,
        )
    )

    parts += ["", _pip_sources(summary)]
    return "\n".join(parts)


def _requirement_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _side_by_side(left: list[str], right: list[str]) -> list[tuple[str, str]]:
    pairs = itertools.zip_longest(left, right, fillvalue="")
    return [(f"`{a}`" if a else "", f"`{b}`" if b else "") for a, b in pairs]


def _freeze(text: str) -> dict[str, str]:
    pairs = (line.partition("==") for line in text.splitlines() if "==" in line)
    return {name: version for name, _, version in pairs}


def _pip_sources(summary: Summary) -> str:
    rows = []
    for name in (f"install-{summary.old}", f"update-{summary.new}"):
        log = _run_log(summary, name)
        pip_lines = [line for line in log.splitlines() if " pip install: " in line]
        installed = next(
            (
                line.split("Successfully installed ", 1)[1]
                for line in pip_lines
                if "Successfully installed " in line
            ),
            "",
        )
        rows.append(
            (
                name,
                sum(" pip install:   Downloading " in line for line in pip_lines),
                sum(" pip install: Processing " in line for line in pip_lines),
                sum("Using cached" in line for line in pip_lines),
                len(installed.split()),
                _packages_check(summary, name),
            )
        )
    headers = [
        "run",
        "wheels downloaded from an index URL",
        "wheels taken from a local file index or folder",
        "from pip's cache",
        "distributions installed",
        "packages check in the state file",
    ]
    return table(headers, rows)


def _packages_check(summary: Summary, name: str) -> str:
    version = name.split("-", 1)[1]
    kind = "install" if name.startswith("install") else "update"
    state = summary.load_json(f"state-{kind}-{version}.json")
    if not state:
        return "-"
    checks = state["phases"]["environment_verification"].get("checks") or []
    for check in checks:
        if check.get("check") == "packages":
            return f"{check['status']}: {summary.hide(check['value'])}"
    return "-"


def state_section(summary: Summary) -> str:
    """Render an excerpt of the state file after the update."""
    state = summary.load_json(f"state-update-{summary.new}.json")
    if not state:
        return "## Final state\n\nThe state file after the update is missing."

    excerpt = {
        key: state.get(key)
        for key in (
            "setup_id",
            "overall_status",
            "overall_progress",
            "error_details",
            "target_version",
        )
    }
    excerpt["phases"] = {
        name: {
            key: phase.get(key)
            for key in (
                "status",
                "progress",
                "current_step",
                "steps_total",
                "warnings",
                "fallbacks",
                "summary",
                "release",
            )
            if key in phase
        }
        for name, phase in state["phases"].items()
    }
    document = summary.hide(json.dumps(excerpt, indent=2))
    return f"## Final state after the update\n\n```json\n{document}\n```"


def warnings_section(summary: Summary) -> str:
    """Render every warning and fallback that the two runs recorded."""
    rows = []
    for kind, version in (("install", summary.old), ("update", summary.new)):
        state = summary.load_json(f"state-{kind}-{version}.json") or {"phases": {}}
        for phase_name, phase in state["phases"].items():
            for key in ("warnings", "fallbacks"):
                for message in phase.get(key) or []:
                    rows.append(
                        (f"{kind} {version}", phase_name, key, summary.hide(message))
                    )
    if not rows:
        return (
            "## Warnings and fallbacks\n\nNone: every phase of both runs has an "
            "empty `warnings` list and no `fallbacks`."
        )
    return "## Warnings and fallbacks\n\n" + table(
        ["run", "phase", "kind", "message"], rows
    )


def checks_section(summary: Summary) -> str:
    """Render the checks made after the update and the app's output."""
    verify = summary.load_json("verify-again.out") or {}
    changed = [
        line
        for line in summary.read_text("verify-again.changed-paths.txt").splitlines()
        if line
    ]
    traced = (summary.results / "app-offline.strace").is_file()
    strace = summary.read_text("app-offline.strace")
    connects = [line for line in strace.splitlines() if "connect(" in line]
    timing = {
        name: key_values(summary.results / f"{name}.time").get("exit_code", "not run")
        for name in (
            "diff-app",
            "diff-modes",
            "diff-app-after-run",
            "app-version",
            "app-offline",
        )
    }
    rows = [
        ("second verification", summary.hide(verify.get("summary_line", "-"))),
        ("second verification: installer runs", verify.get("installer_runs", "-")),
        ("second verification: exit code", verify.get("exit_code", "-")),
        ("paths in environment/ and app/ changed by it", len(changed)),
        ("files in backups/ after the update", _backup_summary(summary)),
        (
            f"`diff -r` app/ against release {summary.new} files/: exit code",
            timing["diff-app"],
        ),
        (
            "permission modes of app/ against files/: `diff` exit code",
            timing["diff-modes"],
        ),
        (
            "`diff -r` again after running the app: exit code",
            timing["diff-app-after-run"],
        ),
        ("app `--version` output", summary.read_text("app-version.out").strip() or "-"),
        ("app `--version` exit code", timing["app-version"]),
        ("app offline request: exit code", timing["app-offline"]),
        (
            "connect() calls by the offline run (strace)",
            len(connects) if traced else "not traced",
        ),
    ]
    parts = ["## Checks after the update", "", table(["check", "result"], rows)]
    offline = summary.read_text("app-offline.out").strip()
    if offline:
        parts += ["", "Output of the offline request:", "", "```", offline, "```"]
    return "\n".join(parts)


def _backup_summary(summary: Summary) -> str:
    paths = [line for line in summary.read_text("backups.txt").splitlines() if line]
    if not paths:
        return "-"
    backups = sorted({path.split("/")[1] for path in paths if path.count("/") >= 2})
    saved = sum(path.split("/")[2:3] == ["files"] for path in paths)
    folders = "backup folder" if len(backups) == 1 else "backup folders"
    return (
        f"{len(paths)} in {len(backups)} {folders} ({', '.join(backups)}), "
        f"{saved} of them saved application files"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Print the summary of the run in WORK_DIR."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: real_world_summary.py WORK_DIR", file=sys.stderr)
        return 2
    work = Path(args[0]).resolve()
    if not (work / "results").is_dir():
        print(
            f"error: {work}/results not found; run scripts/real_world_run.sh first",
            file=sys.stderr,
        )
        return 2

    summary = Summary(work)
    sections = [
        f"# {summary.machine.get('app', '?')} {summary.old} to {summary.new}",
        machine_section(summary),
        commands_section(summary),
        steps_section(summary),
        files_section(summary),
        packages_section(summary),
        checks_section(summary),
        warnings_section(summary),
        state_section(summary),
    ]
    print("\n\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())

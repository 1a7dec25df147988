"""Tests of scripts/real_world_summary.py on results folders written here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "real_world_summary.py"

Capture = pytest.CaptureFixture[str]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("real_world_summary", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


rws = _load_script()


def entry(sha: str, size: int = 10, mode: str = "0644") -> dict[str, object]:
    return {"sha256": sha, "size": size, "mode": mode, "mtime_ns": 1}


def phase_state(steps: dict[str, float], **extra: object) -> dict[str, object]:
    return {
        "status": "completed",
        "progress": 100,
        "start_time": "2026-01-01T00:00:00+00:00",
        "end_time": "2026-01-01T00:00:01.500000+00:00",
        "warnings": [],
        "step_timings": [
            {"step": step, "duration_seconds": seconds}
            for step, seconds in steps.items()
        ],
        **extra,
    }


def setup_state(packages_value: str, **verification_extra: object) -> dict:
    return {
        "setup_id": "setup_1",
        "overall_status": "completed",
        "overall_progress": 100,
        "error_details": None,
        "target_version": "2.0",
        "phases": {
            "codebase_update": phase_state({"Downloading application files": 0.25}),
            "environment_verification": phase_state(
                {"Verifying Python packages": 1.0},
                checks=[{"check": "packages", "status": "ok", "value": packages_value}],
                **verification_extra,
            ),
        },
    }


def write_results(work: Path) -> Path:
    """Write the results of a complete run of app 1.0 to 2.0 under ``work``."""
    results = work / "results"
    results.mkdir(parents=True)
    files = {
        "machine.txt": "app=demo\nold=1.0\nnew=2.0\ncores=2\nuv=absent\n",
        "install-1.0.time": "elapsed_seconds=12.5\nmax_rss_kb=2048\nexit_code=0\n",
        "update-2.0.time": "elapsed_seconds=1.25\nmax_rss_kb=\nexit_code=0\n",
        "install-1.0.out": json.dumps({"log_file": f"{work}/home/logs/a.log"}),
        "update-2.0.out": json.dumps({"log_file": f"{work}/home/logs/b.log"}),
        "a.log": "x pip install:   Downloading rich-1.whl (1 kB)\n"
        "x pip install: Processing /wheels/idna-3.whl\n"
        "x pip install: Successfully installed idna-3 rich-1\n",
        "b.log": "x plan for 2.0: 2 downloads, 5 moves, 1 files kept\n"
        "x download finished: DownloadStats(files_downloaded=2, "
        "bytes_downloaded=30, seconds=0.1234)\n",
        "update-2.0.middleware.log": "t INFO 127.0.0.1 GET /health 200 32 bytes\n"
        "t INFO 127.0.0.1 GET /download/v2.0/new.py 200 20 bytes\n"
        "t INFO 127.0.0.1 GET /download/v2.0/main.py 200 10 bytes\n",
        "verify-again.out": json.dumps(
            {"summary_line": "0 issues found", "installer_runs": 0, "exit_code": 0}
        ),
        "verify-again.changed-paths.txt": "",
        "backups.txt": "backups/1.0-x/backup.json\nbackups/1.0-x/files/abc\n",
        "app-offline.strace": "",
        "requirements-1.0.txt": "# header\nrich<2\n",
        "requirements-2.0.txt": "# header\nrich\nidna\n",
        "packages-after-install.txt": "rich==1\n",
        "packages-after-update.txt": "rich==1\nidna==3\n",
    }
    for name, text in files.items():
        (results / name).write_text(text, encoding="utf-8")

    listings = {
        "installed-1.0.json": {
            "main.py": entry("a"),
            "old.py": entry("b"),
            "keep.py": entry("e"),
        },
        "installed-2.0.json": {
            "main.py": entry("c"),
            "new.py": entry("d", size=20),
            "keep.py": entry("e"),
        },
    }
    for name, listing in listings.items():
        (results / name).write_text(json.dumps({"files": listing}), encoding="utf-8")

    manifest = {
        "codebase": {
            "files_add": ["new.py"],
            "files_edit": ["main.py"],
            "files_delete": ["old.py"],
        }
    }
    (results / "manifest-2.0.json").write_text(json.dumps(manifest))
    install_state = setup_state(f"fixed: installed rich in {work}/home/environment")
    (results / "state-install-1.0.json").write_text(json.dumps(install_state))
    update_state = setup_state("ok: 2 requirements met", fallbacks=["pip for uv"])
    (results / "state-update-2.0.json").write_text(json.dumps(update_state))
    return work


def test_listing_changes_counts_mode_as_edit():
    old = {"files": {"a": entry("1"), "b": entry("2"), "c": entry("3")}}
    new = {"files": {"a": entry("1", mode="0755"), "c": entry("3"), "d": entry("4")}}

    changes = rws.listing_changes(old, new)

    assert changes["added"] == ["d"]
    assert changes["edited"] == ["a"]
    assert changes["deleted"] == ["b"]


def test_table_renders_markdown_rows():
    text = rws.table(["a", "b"], [(1, "x")])

    assert text.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | x |"]


def test_seconds_between_missing_end():
    assert rws.seconds_between("2026-01-01T00:00:00+00:00", None) == "-"


def test_summary_of_complete_run(tmp_path: Path, capsys: Capture):
    work = write_results(tmp_path / "work")

    code = rws.main([str(work)])
    text = capsys.readouterr().out

    assert code == 0
    assert text.startswith("# demo 1.0 to 2.0")
    assert "| install-1.0 | 0 | 12.50 | 2 |" in text
    assert "| update-2.0 | 0 | 1.25 | - |" in text
    assert "| added | 1 | 1 | yes |" in text
    assert "| unchanged | - | 1 | - |" in text
    assert "| update-2.0 | 2 | 30 | 1 | 2 | 30 | 0.123 |" in text
    assert "2 downloads, 5 moves, 1 files kept" in text
    assert "| install-1.0 | 1 | 1 | 0 | 2 |" in text
    assert "| idna | - | 3 |" in text
    assert "| `rich<2` | `rich` |" in text
    assert "| connect() calls by the offline run (strace) | 0 |" in text
    assert "2 in 1 backup folder (1.0-x), 1 of them saved" in text
    assert "| update 2.0 | environment_verification | fallbacks | pip for uv |" in text
    assert "$WORK/home/environment" in text
    assert str(work) not in text


def test_summary_of_partial_run(tmp_path: Path, capsys: Capture):
    results = tmp_path / "work" / "results"
    results.mkdir(parents=True)
    (results / "machine.txt").write_text("app=demo\nold=1.0\nnew=2.0\n")

    code = rws.main([str(tmp_path / "work")])
    text = capsys.readouterr().out

    assert code == 0
    assert "| install-1.0 | not run | - | - |" in text
    assert "| connect() calls by the offline run (strace) | not traced |" in text
    assert "The state file after the update is missing." in text


def test_missing_results_folder_exit_two(tmp_path: Path, capsys: Capture):
    code = rws.main([str(tmp_path)])

    assert code == 2
    assert "results not found" in capsys.readouterr().err


def test_wrong_argument_count_exit_two(capsys: Capture):
    code = rws.main([])

    assert code == 2
    assert "usage:" in capsys.readouterr().err

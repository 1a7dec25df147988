"""Tests of scripts/requirements_from_sdist.py on sdists built in a temp folder."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "requirements_from_sdist.py"

Capture = pytest.CaptureFixture[str]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("requirements_from_sdist", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


rfs = _load_script()

APP_PKG_INFO = """\
Metadata-Version: 2.1
Name: demoapp
Version: 1.2.0
Summary: A demo application
Requires-Python: >=3.7
Requires-Dist: requests[socks]>=2.22.0
Requires-Dist: rich>=9.10.0
Requires-Dist: importlib-metadata>=1.4.0; python_version < "3.8"
Requires-Dist: colorama>=0.2.4; sys_platform == "win32"
Provides-Extra: dev
Requires-Dist: pytest; extra == "dev"
Requires-Dist: werkzeug<2.1.0; extra == 'test' and python_version >= "3.7"

A long description that mentions Requires-Dist: fake>=1 in its body.
"""

APP_REQUIREMENTS = """\
# Requirements of demoapp 1.2.0, from Requires-Dist in PKG-INFO of its sdist.
# 2 requirements that apply only with an extra are left out.
requests[socks]>=2.22.0
rich>=9.10.0
importlib-metadata>=1.4.0; python_version < "3.8"
colorama>=0.2.4; sys_platform == "win32"
"""

REQUIRES_TXT = """\
requests>=2.0

[:sys_platform == "win32"]
colorama>=0.2

[dev]
pytest

[socks:python_version >= "3.8"]
PySocks
"""


def write_tar_sdist(path: Path, files: dict[str, str | bytes]) -> Path:
    """Write a .tar.gz holding ``files`` (archive name to content)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip_sdist(path: Path, files: dict[str, str]) -> Path:
    """Write a .zip holding ``files`` (archive name to content)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return path


def run_cli(capsys: Capture, *args: str) -> tuple[int, str, str]:
    """Run the script's main in-process; return exit code, stdout, stderr."""
    code = rfs.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def app_sdist(tmp_path: Path) -> Path:
    return write_tar_sdist(
        tmp_path / "demoapp-1.2.0.tar.gz",
        {
            "demoapp-1.2.0/PKG-INFO": APP_PKG_INFO,
            "demoapp-1.2.0/demoapp/__init__.py": "",
            "demoapp-1.2.0/demoapp.egg-info/PKG-INFO": APP_PKG_INFO,
        },
    )


def test_tar_sdist_writes_runtime_requirements(
    app_sdist: Path, tmp_path: Path, capsys: Capture
):
    output = tmp_path / "requirements.txt"

    code, stdout, stderr = run_cli(capsys, str(app_sdist), "-o", str(output))

    assert code == 0
    assert output.read_text(encoding="utf-8") == APP_REQUIREMENTS
    assert stdout == ""
    assert "demoapp 1.2.0: 4 runtime requirements, 2 extras-only left out" in stderr


def test_tar_sdist_prints_to_stdout(app_sdist: Path, capsys: Capture):
    code, stdout, _ = run_cli(capsys, str(app_sdist))

    assert code == 0
    assert stdout == APP_REQUIREMENTS


def test_zip_sdist_matches_tar_result(tmp_path: Path, capsys: Capture):
    sdist = write_zip_sdist(
        tmp_path / "demoapp-1.2.0.zip", {"demoapp-1.2.0/PKG-INFO": APP_PKG_INFO}
    )

    code, stdout, _ = run_cli(capsys, str(sdist))

    assert code == 0
    assert stdout == APP_REQUIREMENTS


def test_unpacked_folder_matches_tar_result(tmp_path: Path, capsys: Capture):
    folder = tmp_path / "demoapp-1.2.0"
    folder.mkdir()
    (folder / "PKG-INFO").write_text(APP_PKG_INFO, encoding="utf-8")

    code, stdout, _ = run_cli(capsys, str(folder))

    assert code == 0
    assert stdout == APP_REQUIREMENTS


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("pytest", False),
        ('colorama; sys_platform == "win32"', False),
        ('pytest; extra == "dev"', True),
        ("pytest; extra=='dev'", True),
        ('pytest; python_version >= "3.8" and extra == "test"', True),
        ('pytest; (extra == "a" or extra == "b")', True),
        ('thing; platform_release == "extra"', False),
        ("thing; platform_version == 'an extra build'", False),
    ],
    ids=[
        "no-marker",
        "platform-marker",
        "extra-marker",
        "extra-single-quotes",
        "extra-after-and",
        "extra-in-parentheses",
        "extra-as-value",
        "extra-inside-value",
    ],
)
def test_needs_extra_cases(line: str, expected: bool):
    assert rfs.needs_extra(rfs.Requirement(line)) is expected


def test_requires_txt_sections_become_markers():
    lines = rfs.parse_requires_txt(REQUIRES_TXT)

    assert lines == [
        "requests>=2.0",
        'colorama>=0.2; (sys_platform == "win32")',
        'pytest; extra == "dev"',
        'PySocks; extra == "socks" and (python_version >= "3.8")',
    ]


def test_requires_txt_used_without_requires_dist(tmp_path: Path, capsys: Capture):
    pkg_info = "Metadata-Version: 1.1\nName: old\nVersion: 0.9\n"
    sdist = write_tar_sdist(
        tmp_path / "old-0.9.tar.gz",
        {
            "old-0.9/PKG-INFO": pkg_info,
            "old-0.9/old.egg-info/requires.txt": REQUIRES_TXT,
        },
    )

    code, stdout, _ = run_cli(capsys, str(sdist))

    assert code == 0
    assert stdout.splitlines() == [
        "# Requirements of old 0.9, from requires.txt in the egg-info folder of "
        "its sdist.",
        "# 2 requirements that apply only with an extra are left out.",
        "requests>=2.0",
        'colorama>=0.2; (sys_platform == "win32")',
    ]


def test_requires_txt_found_in_src_layout_folder(tmp_path: Path, capsys: Capture):
    folder = tmp_path / "old-0.9"
    (folder / "src" / "old.egg-info").mkdir(parents=True)
    (folder / "PKG-INFO").write_text("Name: old\nVersion: 0.9\n", encoding="utf-8")
    (folder / "src" / "old.egg-info" / "requires.txt").write_text(
        "requests>=2.0\n", encoding="utf-8"
    )

    code, stdout, _ = run_cli(capsys, str(folder))

    assert code == 0
    assert stdout.splitlines()[-1] == "requests>=2.0"


def test_requires_dist_wins_over_requires_txt(tmp_path: Path, capsys: Capture):
    sdist = write_tar_sdist(
        tmp_path / "demoapp-1.2.0.tar.gz",
        {
            "demoapp-1.2.0/PKG-INFO": APP_PKG_INFO,
            "demoapp-1.2.0/demoapp.egg-info/requires.txt": "other>=1\n",
        },
    )

    code, stdout, _ = run_cli(capsys, str(sdist))

    assert code == 0
    assert stdout == APP_REQUIREMENTS


def test_no_requirements_writes_header_only(tmp_path: Path, capsys: Capture):
    sdist = write_tar_sdist(
        tmp_path / "bare-1.0.tar.gz",
        {"bare-1.0/PKG-INFO": "Metadata-Version: 2.2\nName: bare\nVersion: 1.0\n"},
    )

    code, stdout, _ = run_cli(capsys, str(sdist))

    assert code == 0
    assert stdout.splitlines() == [
        "# Requirements of bare 1.0, from Requires-Dist in PKG-INFO of its sdist.",
        "# 0 requirements that apply only with an extra are left out.",
    ]


def test_dynamic_requires_dist_rejected(tmp_path: Path, capsys: Capture):
    pkg_info = (
        "Metadata-Version: 2.2\nName: dyn\nVersion: 1.0\nDynamic: Requires-Dist\n"
    )
    sdist = write_tar_sdist(tmp_path / "dyn-1.0.tar.gz", {"dyn-1.0/PKG-INFO": pkg_info})
    output = tmp_path / "requirements.txt"

    code, stdout, stderr = run_cli(capsys, str(sdist), "-o", str(output))

    assert code == 2
    assert "marks Requires-Dist as dynamic" in stderr
    assert "Build a wheel" in stderr
    assert stdout == ""
    assert not output.exists()


def test_invalid_requirement_rejected_output_kept(tmp_path: Path, capsys: Capture):
    pkg_info = "Name: bad\nVersion: 1.0\nRequires-Dist: requests >>= 2\n"
    sdist = write_tar_sdist(tmp_path / "bad-1.0.tar.gz", {"bad-1.0/PKG-INFO": pkg_info})
    output = tmp_path / "requirements.txt"
    output.write_text("previous\n", encoding="utf-8")

    code, _, stderr = run_cli(capsys, str(sdist), "-o", str(output))

    assert code == 2
    assert "requirement 'requests >>= 2'" in stderr
    assert "must be valid PEP 508" in stderr
    assert output.read_text(encoding="utf-8") == "previous\n"


def test_missing_name_rejected(tmp_path: Path, capsys: Capture):
    sdist = write_tar_sdist(
        tmp_path / "x-1.0.tar.gz", {"x-1.0/PKG-INFO": "Version: 1.0\n"}
    )

    code, _, stderr = run_cli(capsys, str(sdist))

    assert code == 2
    assert "must have Name and Version fields" in stderr
    assert "Name=None" in stderr


def test_missing_source_not_found(tmp_path: Path, capsys: Capture):
    code, _, stderr = run_cli(capsys, str(tmp_path / "absent-1.0.tar.gz"))

    assert code == 2
    assert "absent-1.0.tar.gz not found" in stderr


def test_unknown_suffix_rejected(tmp_path: Path, capsys: Capture):
    wheel = tmp_path / "demoapp-1.2.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")

    code, _, stderr = run_cli(capsys, str(wheel))

    assert code == 2
    assert "must end in one of .tar.gz" in stderr


def test_damaged_archive_rejected(app_sdist: Path, tmp_path: Path, capsys: Capture):
    damaged = tmp_path / "damaged-1.0.tar.gz"
    damaged.write_bytes(app_sdist.read_bytes()[:40])

    code, _, stderr = run_cli(capsys, str(damaged))

    assert code == 2
    assert "could not be read" in stderr


def test_archive_without_pkg_info_rejected(tmp_path: Path, capsys: Capture):
    sdist = write_tar_sdist(
        tmp_path / "x-1.0.tar.gz",
        {"x-1.0/setup.py": "", "x-1.0/x.egg-info/PKG-INFO": APP_PKG_INFO},
    )

    code, _, stderr = run_cli(capsys, str(sdist))

    assert code == 2
    assert "must contain exactly one TOP/PKG-INFO, found 0" in stderr


def test_two_top_folders_rejected(tmp_path: Path, capsys: Capture):
    sdist = write_tar_sdist(
        tmp_path / "x-1.0.tar.gz",
        {"a-1.0/PKG-INFO": APP_PKG_INFO, "b-1.0/PKG-INFO": APP_PKG_INFO},
    )

    code, _, stderr = run_cli(capsys, str(sdist))

    assert code == 2
    assert "found 2" in stderr


def test_pkg_info_symlink_not_read(tmp_path: Path, capsys: Capture):
    sdist = tmp_path / "link-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo("link-1.0/PKG-INFO")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/hostname"
        tar.addfile(info)

    code, _, stderr = run_cli(capsys, str(sdist))

    assert code == 2
    assert "found 0" in stderr


def test_two_requires_txt_rejected(tmp_path: Path, capsys: Capture):
    pkg_info = "Name: two\nVersion: 1.0\n"
    sdist = write_tar_sdist(
        tmp_path / "two-1.0.tar.gz",
        {
            "two-1.0/PKG-INFO": pkg_info,
            "two-1.0/a.egg-info/requires.txt": "a\n",
            "two-1.0/src/b.egg-info/requires.txt": "b\n",
        },
    )

    code, _, stderr = run_cli(capsys, str(sdist))

    assert code == 2
    assert "at most one *.egg-info/requires.txt, found 2" in stderr


def test_oversized_pkg_info_rejected(
    app_sdist: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
):
    monkeypatch.setattr(rfs, "MAX_METADATA_BYTES", 100)

    code, _, stderr = run_cli(capsys, str(app_sdist))

    assert code == 2
    assert "must be at most 100 bytes" in stderr


def test_non_utf8_pkg_info_rejected(tmp_path: Path, capsys: Capture):
    sdist = write_tar_sdist(
        tmp_path / "latin-1.0.tar.gz",
        {"latin-1.0/PKG-INFO": "Name: caf\xe9\nVersion: 1.0\n".encode("latin-1")},
    )

    code, _, stderr = run_cli(capsys, str(sdist))

    assert code == 2
    assert "must be UTF-8 text" in stderr


def test_unwritable_output_exit_one(app_sdist: Path, tmp_path: Path, capsys: Capture):
    output = tmp_path / "folder"
    output.mkdir()

    code, _, stderr = run_cli(capsys, str(app_sdist), "-o", str(output))

    assert code == 1
    assert f"writing {output} failed" in stderr
    assert output.is_dir()


def test_script_runs_as_child_process(app_sdist: Path, tmp_path: Path):
    output = tmp_path / "requirements.txt"

    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(app_sdist), "--output", str(output)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert completed.returncode == 0
    assert output.read_text(encoding="utf-8") == APP_REQUIREMENTS

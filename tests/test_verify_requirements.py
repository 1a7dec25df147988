"""Tests of requirements parsing: what is judged, what goes to the installer."""

from __future__ import annotations

from pathlib import Path

import pytest

from codemate_setup.verify.requirements import (
    LineKind,
    logical_lines,
    parse_requirements,
)


def parse(text: str, base_dir: Path, **kwargs: object):
    return parse_requirements(text, "requirements.txt", base_dir, **kwargs)


def test_logical_lines_join_continuations_and_strip_comments() -> None:
    text = "# heading\ncm-alpha==1.0 \\\n  ; python_version >= '3'  # why\n\ncm-beta\n"

    lines = logical_lines(text)

    assert lines == [(2, "cm-alpha==1.0   ; python_version >= '3'"), (5, "cm-beta")]


def test_logical_lines_keep_hash_inside_url() -> None:
    lines = logical_lines("pkg @ https://example.invalid/p.whl#sha256=abc\n")

    assert lines == [(1, "pkg @ https://example.invalid/p.whl#sha256=abc")]


@pytest.mark.parametrize(
    ("line", "name", "specifier"),
    [
        ("cm-alpha==1.0", "cm-alpha", "==1.0"),
        ("CM_Alpha >= 1, < 3", "CM_Alpha", "<3,>=1"),
        ("cm-alpha[fast]~=1.0", "cm-alpha", "~=1.0"),
        ('cm-alpha; python_version < "3.0"', "cm-alpha", ""),
    ],
    ids=["pinned", "range", "extras", "marker"],
)
def test_requirement_lines_are_judged(
    tmp_path: Path, line: str, name: str, specifier: str
) -> None:
    parsed = parse(line, tmp_path)

    assert len(parsed.requirements) == 1
    requirement = parsed.requirements[0].requirement
    assert requirement is not None
    assert requirement.name == name
    assert str(requirement.specifier) == specifier


def test_hash_options_stay_on_the_line(tmp_path: Path) -> None:
    parsed = parse("cm-alpha==1.0 --hash=sha256:abcd\n", tmp_path)

    line = parsed.requirements[0]
    assert line.text == "cm-alpha==1.0 --hash=sha256:abcd"
    assert line.hashed is True
    assert str(line.requirement) == "cm-alpha==1.0"


@pytest.mark.parametrize(
    "line",
    ["./local-project", "https://example.invalid/archive.zip", "cm alpha ==="],
    ids=["local-path", "bare-url", "invalid"],
)
def test_unparsable_lines_go_to_installer(tmp_path: Path, line: str) -> None:
    parsed = parse(line, tmp_path)

    assert parsed.requirements == []
    assert [item.kind for item in parsed.lines] == [LineKind.OPAQUE]
    assert parsed.problems == []


def test_editable_line_is_opaque_with_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "plugin").mkdir()

    parsed = parse("-e ./plugin\n", tmp_path)

    assert [line.text for line in parsed.opaque] == [f"-e {tmp_path / 'plugin'}"]


def test_global_options_are_kept(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "constraints.txt").write_text("cm-alpha<3\n")
    text = (
        "--index-url https://index.invalid/simple\n"
        "--find-links wheels\n"
        "-c constraints.txt\n"
        "--pre\n"
        "cm-alpha\n"
    )

    parsed = parse(text, tmp_path)

    assert parsed.options == [
        "--index-url https://index.invalid/simple",
        f"--find-links {tmp_path / 'wheels'}",
        f"-c {tmp_path / 'constraints.txt'}",
        "--pre",
    ]
    assert len(parsed.requirements) == 1


def test_include_is_followed_relative_to_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.txt").write_text("cm-alpha==1.0\n-r more.txt\n")
    (tmp_path / "sub" / "more.txt").write_text("cm-beta\n")

    parsed = parse("-r sub/base.txt\ncm-gamma\n", tmp_path)

    names = [line.requirement.name for line in parsed.requirements]
    assert names == ["cm-alpha", "cm-beta", "cm-gamma"]
    assert parsed.requirements[1].where == "more.txt:1"


def test_include_cycle_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("-r b.txt\ncm-alpha\n")
    (tmp_path / "b.txt").write_text("-r a.txt\ncm-beta\n")

    parsed = parse("-r a.txt\n", tmp_path)

    names = sorted(line.requirement.name for line in parsed.requirements)
    assert names == ["cm-alpha", "cm-beta"]
    assert parsed.problems == []


def test_missing_include_is_a_problem(tmp_path: Path) -> None:
    parsed = parse("cm-alpha\n-r gone.txt\n", tmp_path)

    assert len(parsed.problems) == 1
    assert (
        "requirements.txt:2 includes gone.txt, which cannot be read"
        in (parsed.problems[0])
    )
    assert "remove the -r line" in parsed.problems[0]


def test_include_depth_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "self.txt").write_text("-r deeper/self.txt\n")
    folder = tmp_path
    for _ in range(4):
        folder = folder / "deeper"
        folder.mkdir()
        (folder / "self.txt").write_text("-r deeper/self.txt\n")

    parsed = parse("-r self.txt\n", tmp_path, max_depth=3)

    assert len(parsed.problems) == 1
    assert "deeper than 3 levels of -r" in parsed.problems[0]


def test_url_include_goes_to_installer(tmp_path: Path) -> None:
    parsed = parse("-r https://example.invalid/req.txt\n", tmp_path)

    assert [line.text for line in parsed.opaque] == [
        "-r https://example.invalid/req.txt"
    ]


def test_environment_variables_are_expanded_for_judging(tmp_path: Path) -> None:
    parsed = parse("cm-alpha==${CM_VERSION}\n", tmp_path, environ={"CM_VERSION": "1.0"})

    line = parsed.requirements[0]
    assert str(line.requirement.specifier) == "==1.0"
    assert line.text == "cm-alpha==${CM_VERSION}"


def test_direct_reference_is_judged(tmp_path: Path) -> None:
    parsed = parse("cm-alpha @ https://example.invalid/cm_alpha-1.0.whl\n", tmp_path)

    requirement = parsed.requirements[0].requirement
    assert requirement.url == "https://example.invalid/cm_alpha-1.0.whl"

"""Tests of the package plan and the dependency check (no environment needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.markers import default_environment

from codemate_setup.verify.packages import (
    Verdict,
    find_conflicts,
    judge_line,
    plan_packages,
    required_closure,
)
from codemate_setup.verify.probe import InstalledDistribution
from codemate_setup.verify.requirements import parse_requirements

MARKERS = {key: str(value) for key, value in default_environment().items()}
PY38_MARKERS = {**MARKERS, "python_version": "3.8", "python_full_version": "3.8.10"}


def installed(*dists: InstalledDistribution) -> dict[str, InstalledDistribution]:
    return {dist.key: dist for dist in dists}


def lines(text: str):
    return parse_requirements(text, "requirements.txt", Path.cwd()).lines


ALPHA_1 = InstalledDistribution("cm-alpha", "1.0")
ALPHA_2 = InstalledDistribution("CM_Alpha", "2.0")
BETA = InstalledDistribution("cm-beta", "1.0", ("cm-alpha>=1",))
GAMMA = InstalledDistribution(
    "cm-gamma", "1.0", ('cm-alpha>=2; extra == "fast"', 'cm-delta; os_name == "nt!"')
)


@pytest.mark.parametrize(
    ("text", "dists", "verdict"),
    [
        ("cm-alpha==1.0", (ALPHA_1,), Verdict.SATISFIED),
        ("cm-alpha", (ALPHA_2,), Verdict.SATISFIED),
        ("cm_alpha>=2", (ALPHA_2,), Verdict.SATISFIED),
        ("cm-alpha==1.0", (), Verdict.MISSING),
        ("cm-alpha==1.0", (ALPHA_2,), Verdict.WRONG_VERSION),
        ('cm-alpha==1.0; python_version < "3.0"', (), Verdict.NOT_APPLICABLE),
        (
            "cm-alpha>=1.0a1",
            (InstalledDistribution("cm-alpha", "1.1rc1"),),
            Verdict.SATISFIED,
        ),
        (
            "cm-alpha==1.0",
            (InstalledDistribution("cm-alpha", "not-a-version"),),
            Verdict.WRONG_VERSION,
        ),
        ("cm-gamma[fast]", (GAMMA, ALPHA_1), Verdict.MISSING_EXTRAS),
        ("cm-gamma[fast]", (GAMMA, ALPHA_2), Verdict.SATISFIED),
        ("./some/path", (), Verdict.UNJUDGED),
    ],
    ids=[
        "pinned-match",
        "unpinned-canonical-name",
        "range-match",
        "missing",
        "wrong-version",
        "marker-excludes",
        "prerelease-installed",
        "invalid-installed-version",
        "extra-dependency-wrong",
        "extra-dependency-met",
        "opaque",
    ],
)
def test_judge_line_verdicts(text: str, dists: tuple, verdict: Verdict) -> None:
    judgement = judge_line(lines(text)[0], installed(*dists), MARKERS)

    assert judgement.verdict is verdict


def test_marker_uses_environment_interpreter() -> None:
    line = lines('cm-alpha==1.0; python_version < "3.9"')[0]

    current = judge_line(line, {}, {**MARKERS, "python_version": "3.11"})
    old = judge_line(line, {}, PY38_MARKERS)

    assert current.verdict is Verdict.NOT_APPLICABLE
    assert old.verdict is Verdict.MISSING


def test_direct_reference_matches_recorded_url() -> None:
    dist = InstalledDistribution(
        "cm-alpha", "1.0", direct_url="https://example.invalid/cm_alpha-1.0.whl"
    )
    same = lines("cm-alpha @ https://example.invalid/cm_alpha-1.0.whl#sha256=ab")[0]
    other = lines("cm-alpha @ https://example.invalid/cm_alpha-2.0.whl")[0]

    assert judge_line(same, installed(dist), MARKERS).verdict is Verdict.SATISFIED
    assert judge_line(other, installed(dist), MARKERS).verdict is Verdict.WRONG_SOURCE


def test_vcs_reference_ignores_revision() -> None:
    dist = InstalledDistribution(
        "cm-alpha", "1.0", direct_url="https://git.example.invalid/cm-alpha.git"
    )
    line = lines("cm-alpha @ git+https://git.example.invalid/cm-alpha.git@v1.0")[0]

    assert judge_line(line, installed(dist), MARKERS).verdict is Verdict.SATISFIED


def test_plan_installs_only_unmet_lines() -> None:
    text = "cm-alpha==1.0\ncm-beta==1.0\ncm-zeta; python_version < '3'\n-e ./x\n"

    plan = plan_packages(lines(text), installed(ALPHA_1), MARKERS)

    assert [line.text for line in plan.to_install] == ["cm-beta==1.0", "-e ./x"]
    assert plan.count(Verdict.SATISFIED) == 1
    assert plan.count(Verdict.NOT_APPLICABLE) == 1


def test_plan_is_empty_when_everything_matches() -> None:
    plan = plan_packages(
        lines("cm-alpha\ncm-beta\n"), installed(ALPHA_1, BETA), MARKERS
    )

    assert plan.to_install == []


def test_conflict_missing_dependency() -> None:
    conflicts = find_conflicts(installed(BETA), MARKERS)

    assert [c.message() for c in conflicts] == [
        "cm-beta 1.0 requires cm-alpha>=1, which is not installed"
    ]


def test_conflict_wrong_dependency_version() -> None:
    beta = InstalledDistribution("cm-beta", "1.0", ("cm-alpha>=2",))

    conflicts = find_conflicts(installed(beta, ALPHA_1), MARKERS)

    assert [c.message() for c in conflicts] == [
        "cm-beta 1.0 requires cm-alpha>=2, but 1.0 is installed"
    ]
    assert conflicts[0].repair_line() == "cm-alpha>=2"


def test_conflict_ignores_extras_and_false_markers() -> None:
    conflicts = find_conflicts(installed(GAMMA, ALPHA_1), MARKERS)

    assert conflicts == []


def test_closure_follows_installed_dependencies() -> None:
    plan = plan_packages(lines("cm-beta\n"), installed(BETA, ALPHA_1, GAMMA), MARKERS)

    closure = required_closure(plan, installed(BETA, ALPHA_1, GAMMA), MARKERS)

    assert closure == {"cm-beta", "cm-alpha"}


def test_closure_follows_requested_extras() -> None:
    dists = installed(GAMMA, ALPHA_2)
    plan = plan_packages(lines("cm-gamma[fast]\n"), dists, MARKERS)

    closure = required_closure(plan, dists, MARKERS)

    assert closure == {"cm-gamma", "cm-alpha"}

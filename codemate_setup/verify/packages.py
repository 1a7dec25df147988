"""Judge requirements against installed distributions, and find broken dependencies.

Everything here is pure: the installed distributions and the marker values come
from one probe of the environment's interpreter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from packaging.markers import Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from codemate_setup.verify.probe import InstalledDistribution
from codemate_setup.verify.requirements import LineKind, RequirementLine

logger = logging.getLogger(__name__)

Installed = Mapping[str, InstalledDistribution]

_VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+")


class Verdict(str, Enum):
    """Result of comparing one requirements line with the environment."""

    SATISFIED = "satisfied"
    NOT_APPLICABLE = "not applicable"
    MISSING = "missing"
    WRONG_VERSION = "wrong version"
    WRONG_SOURCE = "wrong source"
    MISSING_EXTRAS = "missing extras"
    UNJUDGED = "unjudged"

    @property
    def needs_install(self) -> bool:
        """True when the line goes to the installer."""
        return self not in (Verdict.SATISFIED, Verdict.NOT_APPLICABLE)


@dataclass(frozen=True)
class Judgement:
    """The verdict on one line and why."""

    line: RequirementLine
    verdict: Verdict
    reason: str


@dataclass
class PackagePlan:
    """The verdicts on every line of a requirements set."""

    judgements: list[Judgement] = field(default_factory=list)

    @property
    def to_install(self) -> list[RequirementLine]:
        """Lines the installer must get, in file order."""
        return [j.line for j in self.judgements if j.verdict.needs_install]

    def count(self, verdict: Verdict) -> int:
        """Return how many lines got ``verdict``."""
        return sum(1 for j in self.judgements if j.verdict is verdict)


@dataclass(frozen=True)
class Conflict:
    """A dependency of an installed distribution that is missing or wrong.

    Attributes:
        dependent: The distribution that declares the dependency.
        dependent_version: Its version.
        requirement: The ``Requires-Dist`` requirement that does not hold.
        found: The installed version of the dependency, None when missing.
    """

    dependent: str
    dependent_version: str
    requirement: Requirement
    found: str | None

    def message(self) -> str:
        """Describe the conflict the way ``pip check`` does."""
        needed = (
            f"{self.dependent} {self.dependent_version} requires {self.requirement}"
        )
        if self.found is None:
            return f"{needed}, which is not installed"
        return f"{needed}, but {self.found} is installed"

    def repair_line(self) -> str:
        """Return a requirement that installs a matching version."""
        requirement = Requirement(str(self.requirement))
        requirement.marker = None
        return str(requirement)


def marker_holds(marker: Marker | None, markers: Mapping[str, str], extra: str) -> bool:
    """Evaluate a marker for the environment's interpreter and one extra.

    A marker that cannot be evaluated (an unknown variable, or a comparison
    without a defined meaning) counts as false, and is logged.
    """
    if marker is None:
        return True

    environment = dict(markers)
    environment["extra"] = extra
    try:
        return marker.evaluate(environment)
    except (UndefinedComparison, UndefinedEnvironmentName) as e:
        logger.debug(
            "marker %s cannot be evaluated (%s); treating it as false", marker, e
        )
        return False


def version_matches(requirement: Requirement, version: str) -> bool:
    """Tell whether an installed version meets a requirement's specifier.

    Pre-releases count as matching, as they do for pip when the version is
    already installed.
    """
    if not requirement.specifier:
        return True
    try:
        parsed = Version(version)
    except InvalidVersion:
        return False
    return requirement.specifier.contains(parsed, prereleases=True)


def judge_line(
    line: RequirementLine, installed: Installed, markers: Mapping[str, str]
) -> Judgement:
    """Compare one requirements line with the installed distributions."""
    requirement = line.requirement
    if line.kind is LineKind.OPAQUE or requirement is None:
        return Judgement(line, Verdict.UNJUDGED, "only the installer can judge it")

    if not marker_holds(requirement.marker, markers, ""):
        return Judgement(
            line, Verdict.NOT_APPLICABLE, f"marker {requirement.marker} is false here"
        )

    dist = installed.get(canonicalize_name(requirement.name))
    if dist is None:
        return Judgement(line, Verdict.MISSING, f"{requirement.name} is not installed")

    if requirement.url:
        if _comparable_url(requirement.url) != _comparable_url(dist.direct_url or ""):
            return Judgement(
                line,
                Verdict.WRONG_SOURCE,
                f"{dist.name} {dist.version} was not installed from {requirement.url}",
            )
    elif not version_matches(requirement, dist.version):
        return Judgement(
            line,
            Verdict.WRONG_VERSION,
            f"{dist.name} {dist.version} is installed, {requirement} is required",
        )

    missing = _missing_extra_dependencies(requirement, dist, installed, markers)
    if missing:
        return Judgement(
            line,
            Verdict.MISSING_EXTRAS,
            f"{requirement} needs {', '.join(missing)}",
        )

    return Judgement(line, Verdict.SATISFIED, f"{dist.name} {dist.version}")


def plan_packages(
    lines: Iterable[RequirementLine], installed: Installed, markers: Mapping[str, str]
) -> PackagePlan:
    """Judge every line; the plan installs only what is missing or wrong."""
    plan = PackagePlan()
    for line in lines:
        judgement = judge_line(line, installed, markers)
        logger.debug("%s %s: %s", line.where, judgement.verdict.value, judgement.reason)
        plan.judgements.append(judgement)
    return plan


def find_conflicts(installed: Installed, markers: Mapping[str, str]) -> list[Conflict]:
    """Find dependencies that are missing or wrong, like ``pip check`` does.

    Only dependencies whose marker is true without extras are checked.
    """
    conflicts = []
    for dist in sorted(installed.values(), key=lambda d: d.key):
        for requirement in _dependencies(dist, markers, ""):
            found = installed.get(canonicalize_name(requirement.name))
            if found is not None and version_matches(requirement, found.version):
                continue
            conflicts.append(
                Conflict(
                    dist.name,
                    dist.version,
                    requirement,
                    None if found is None else found.version,
                )
            )
    return conflicts


def required_closure(
    plan: PackagePlan, installed: Installed, markers: Mapping[str, str]
) -> set[str]:
    """Return the canonical names the requirements need, dependencies included."""
    pending = []
    for judgement in plan.judgements:
        requirement = judgement.line.requirement
        if requirement is None or judgement.verdict is Verdict.NOT_APPLICABLE:
            continue
        pending.append(
            (canonicalize_name(requirement.name), sorted(requirement.extras))
        )

    closure: set[str] = set()
    while pending:
        key, extras = pending.pop()
        if key in closure:
            continue
        closure.add(key)
        dist = installed.get(key)
        if dist is None:
            continue
        for extra in ["", *extras]:
            for dependency in _dependencies(dist, markers, extra):
                pending.append(
                    (canonicalize_name(dependency.name), sorted(dependency.extras))
                )
    return closure


def _dependencies(
    dist: InstalledDistribution, markers: Mapping[str, str], extra: str
) -> list[Requirement]:
    result = []
    for text in dist.requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            logger.debug("ignoring an invalid Requires-Dist of %s: %r", dist.name, text)
            continue
        if marker_holds(requirement.marker, markers, extra):
            result.append(requirement)
    return result


def _missing_extra_dependencies(
    requirement: Requirement,
    dist: InstalledDistribution,
    installed: Installed,
    markers: Mapping[str, str],
) -> list[str]:
    base = {str(dependency) for dependency in _dependencies(dist, markers, "")}
    missing = []
    for extra in sorted(requirement.extras):
        for dependency in _dependencies(dist, markers, extra):
            if str(dependency) in base:
                continue
            found = installed.get(canonicalize_name(dependency.name))
            if found is None or not version_matches(dependency, found.version):
                missing.append(str(dependency))
    return missing


def _comparable_url(url: str) -> str:
    """Reduce a direct reference to the form ``direct_url.json`` stores.

    The fragment (``#sha256=…`` or ``#egg=…``), the VCS prefix and a VCS
    revision suffix are dropped.
    """
    base = url.split("#", 1)[0]
    vcs = base.startswith(_VCS_PREFIXES)
    if vcs:
        base = base.split("+", 1)[1]
        head, sep, tail = base.rpartition("/")
        if "@" in tail:
            base = head + sep + tail.split("@", 1)[0]
    return base.rstrip("/")

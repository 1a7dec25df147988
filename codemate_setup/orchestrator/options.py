"""The options of one orchestrated setup."""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.version import Version

from codemate_setup.config import HomeLayout, Limits


@dataclass
class SetupOptions:
    """Everything ``setup_orchestrator.py VERSION`` was asked to do."""

    layout: HomeLayout
    version: Version | None
    middleware_url: str
    repo: str | None = None
    allow_insecure_http: bool = False
    yes: bool = False
    allow_downgrade: bool = False
    resume: bool = False
    skip_update: bool = False
    skip_verification: bool = False
    isolated: bool = False
    installer: str = "auto"
    index_url: str | None = None
    find_links: str | None = None
    limits: Limits = field(default_factory=Limits)

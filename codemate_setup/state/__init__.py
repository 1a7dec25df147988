"""The live state file that the GUI polls, and the tracker that writes it."""

from codemate_setup.state.liveness import Liveness, assess
from codemate_setup.state.schema import OverallStatus, Phase, PhaseStatus
from codemate_setup.state.store import StateStore
from codemate_setup.state.tracker import SetupTracker, get_tracker

__all__ = [
    "Liveness",
    "OverallStatus",
    "Phase",
    "PhaseStatus",
    "SetupTracker",
    "StateStore",
    "assess",
    "get_tracker",
]

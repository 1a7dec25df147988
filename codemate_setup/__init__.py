"""Install, update and verify the CodeMate desktop application.

The top-level scripts (``setup_tracker.py``, ``update.py``, ``verification_env.py``,
``setup_orchestrator.py``) parse arguments and map outcomes to exit codes. The logic
lives in this package.
"""

__version__ = "0.1.0"

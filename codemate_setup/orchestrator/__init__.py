"""The setup orchestrator: both phases, signals, status and live display."""

"""Benchmarks of the setup toolkit, each measured against a reference in the same run.

Run them all with ``python bench/run.py``; see ``docs/benchmarks.md``.
"""

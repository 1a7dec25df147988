"""Time every state-file write of a process, for the setup benchmark.

Python imports ``sitecustomize`` at startup from any folder on ``PYTHONPATH``.
When ``CODEMATE_BENCH_TRACE`` names a file, this one wraps
``StateStore.transact`` as soon as ``codemate_setup.state.store`` is imported.
At exit it appends one JSON line to that file with the number of writes, their
total seconds (lock wait included) and the longest one, in all threads and in
the main thread alone. Without the variable it does nothing.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
from types import ModuleType
from typing import Any

TRACE_VARIABLE = "CODEMATE_BENCH_TRACE"
TARGET_MODULE = "codemate_setup.state.store"

_totals = {
    "writes": 0,
    "seconds": 0.0,
    "longest": 0.0,
    "main_writes": 0,
    "main_seconds": 0.0,
}
_totals_lock = threading.Lock()


class _StoreHook(importlib.abc.MetaPathFinder):
    """Finds the store module with the other finders, then patches it once run."""

    def find_spec(
        self, name: str, path: Any, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != TARGET_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                _wrap_loader(spec.loader)
                return spec
        return None


def _wrap_loader(loader: Any) -> None:
    original = loader.exec_module

    def exec_module(module: ModuleType) -> None:
        original(module)
        _patch(module)

    loader.exec_module = exec_module


def _patch(module: ModuleType) -> None:
    store_class = module.StateStore
    transact = store_class.transact

    def timed_transact(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return transact(self, *args, **kwargs)
        finally:
            _record(time.perf_counter() - started)

    store_class.transact = timed_transact
    atexit.register(_report)


def _record(seconds: float) -> None:
    with _totals_lock:
        _totals["writes"] += 1
        _totals["seconds"] += seconds
        _totals["longest"] = max(_totals["longest"], seconds)
        if threading.current_thread() is threading.main_thread():
            _totals["main_writes"] += 1
            _totals["main_seconds"] += seconds


def _report() -> None:
    record = {"pid": os.getpid(), "argv0": sys.argv[0] if sys.argv else "", **_totals}
    with open(os.environ[TRACE_VARIABLE], "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


if os.environ.get(TRACE_VARIABLE):
    sys.meta_path.insert(0, _StoreHook())

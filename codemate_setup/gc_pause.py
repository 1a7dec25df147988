"""Pausing of the cyclic garbage collector while an update builds its records."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


class CollectorPause:
    """Keeps the cyclic garbage collector off the per-file records of an update.

    Comparing a large installation builds hundreds of thousands of small
    objects without reference cycles, which reference counting frees. The
    collector would walk all of them at each full collection, a large share
    of the comparison. It is paused while they are built, and what exists at
    the end of a pause is frozen (``gc.freeze``), so that later collections
    skip it too, until :meth:`end`. Nothing changes when the collector is
    off, or when the caller froze objects of its own.
    """

    def __init__(self) -> None:
        self._active = gc.isenabled() and gc.get_freeze_count() == 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Pause the collector for the ``with`` block."""
        if not self._active:
            yield
            return
        gc.disable()
        try:
            yield
        finally:
            gc.freeze()
            gc.enable()

    def end(self) -> None:
        """Hand the frozen objects back to the collector."""
        if self._active:
            gc.unfreeze()

"""Named tuples built in bulk, for the per-file records of large releases."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import Any, TypeVar

Record = TypeVar("Record", bound=tuple)


def make_records(cls: type[Record], rows: Iterable[Iterable[Any]]) -> Iterator[Record]:
    """Build a named tuple of class ``cls`` from each row, as ``cls._make`` does.

    ``tuple.__new__`` builds each one in C, without the Python-level call of
    ``_make``, several times faster. Each row must have one value per field of
    ``cls``, which is not checked.
    """
    return map(tuple.__new__, repeat(cls), rows)

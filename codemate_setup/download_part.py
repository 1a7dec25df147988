"""The ``.part`` file of one download in progress, with the hash of its bytes."""

from __future__ import annotations

from typing import Any, BinaryIO

from codemate_setup.download_hash import BackgroundHasher


class PartFile:
    """The open ``.part`` file of one download and the hash of its bytes.

    ``handle`` is open for reading and writing, because the hashing thread
    reads back the regions that a spliced body wrote.

    The hash is computed in a second thread once the file reaches one chunk,
    so :meth:`close` must be called when the download ends, whichever way.
    """

    def __init__(self, handle: BinaryIO, batch_bytes: int, initial: Any = None) -> None:
        self.handle = handle
        self.batch_bytes = batch_bytes
        self.hasher = BackgroundHasher(batch_bytes, initial=initial)
        self.received = 0
        self.validator: str | None = None

    def region_fd(self) -> int:
        """Return the file's descriptor, from which the hasher reads regions."""
        return self.handle.fileno()

    def reset(self) -> None:
        """Drop every byte received, to start again from byte 0."""
        # The hashing thread may still read the file, and would find it short,
        # so it ends before truncate().
        self.hasher.close()
        self.handle.seek(0)
        self.handle.truncate()
        self.hasher = BackgroundHasher(self.batch_bytes)
        self.received = 0
        self.validator = None

    def close(self) -> None:
        """End the hashing thread and close the file."""
        try:
            self.hasher.close()
        finally:
            self.handle.close()

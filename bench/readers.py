"""Poll a JSON file as a GUI does, counting reads and unparseable reads.

Usage: ``python bench/readers.py FILE STOP_FILE INTERVAL_SECONDS``. The poller
runs until ``STOP_FILE`` exists, then prints ``{"reads": N, "failures": N}``.
"""

from __future__ import annotations

import json
import os
import sys
import time


def poll(path: str, stop_file: str, interval: float) -> dict[str, int]:
    """Read and parse ``path`` every ``interval`` seconds until ``stop_file`` exists.

    Returns:
        The number of complete reads and of reads that were not valid JSON.
    """
    reads = 0
    failures = 0
    while not os.path.exists(stop_file):
        try:
            with open(path, "rb") as handle:
                json.loads(handle.read())
            reads += 1
        except FileNotFoundError:
            pass
        except ValueError:
            failures += 1
        time.sleep(interval)
    return {"reads": reads, "failures": failures}


if __name__ == "__main__":
    counts = poll(sys.argv[1], sys.argv[2], float(sys.argv[3]))
    print(json.dumps(counts))

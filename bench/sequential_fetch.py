"""Download release files one at a time over one connection: a reference.

Usage: ``python bench/sequential_fetch.py BASE_URL VERSION PATHS_FILE OUT_DIR``,
where ``PATHS_FILE`` lists one release path per line. One ``requests.Session``
keeps a single keep-alive connection; each body is written to
``OUT_DIR/PATH``. Nothing is hashed or verified.
"""

from __future__ import annotations

import sys
from pathlib import Path

import requests

CHUNK_BYTES = 1024 * 1024


def fetch_all(base_url: str, version: str, paths: list[str], out_dir: Path) -> None:
    """Download each path in turn into ``out_dir``.

    Raises:
        requests.HTTPError: If a response is not 200.
    """
    with requests.Session() as session:
        for path in paths:
            target = out_dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            url = f"{base_url}/download/v{version}/{path}"
            with session.get(url, stream=True, timeout=30) as response:
                response.raise_for_status()
                with open(target, "wb") as handle:
                    for chunk in response.iter_content(CHUNK_BYTES):
                        handle.write(chunk)


if __name__ == "__main__":
    base, release_version, paths_file, out = sys.argv[1:5]
    listed = Path(paths_file).read_text().split()
    fetch_all(base, release_version, listed, Path(out))

"""Run the main job on the bundled example releases, end to end.

Publishes ``examples/releases-src/2.9.0`` and ``3.0.0`` into a temporary
releases folder, serves them with the reference middleware on a free loopback
port, installs 2.9.0 into a throwaway home with ``setup_orchestrator.py``, then
updates it to 3.0.0, and prints the final state. Everything is removed at the
end unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "releases-src"
VERSIONS = ["2.9.0", "3.0.0"]


def publish(releases: Path) -> None:
    for version in VERSIONS:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "codemate_setup.publish",
                str(EXAMPLES / version),
                "--version",
                version,
                "--to",
                str(releases),
                "--entry-point",
                "initiate.py",
            ],
            check=True,
            cwd=ROOT,
        )


def start_middleware(releases: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codemate_setup.middleware",
            str(releases),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    url = server.stdout.readline().strip() if server.stdout else ""
    if not url.startswith("http://"):
        server.kill()
        raise SystemExit(f"error: the middleware did not start (printed {url!r})")
    return server, url


def setup(version: str, url: str, home: Path) -> int:
    command = [
        sys.executable,
        str(ROOT / "setup_orchestrator.py"),
        version,
        "--middleware-url",
        url,
        "--home",
        str(home),
        "--yes",
    ]
    print(f"\n$ python setup_orchestrator.py {' '.join(command[2:])}")
    return subprocess.run(command, cwd=ROOT).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="codemate-demo-"))
    releases, home = work / "releases", work / "home"
    server = None
    try:
        publish(releases)
        server, url = start_middleware(releases)
        print(f"middleware serving {releases} at {url}")
        for version in VERSIONS:
            code = setup(version, url, home)
            if code != 0:
                print(f"setup of {version} exited with {code}")
                return code
        print(f"\n$ python setup_tracker.py --home {home}")
        subprocess.run(
            [sys.executable, str(ROOT / "setup_tracker.py"), "--home", str(home)],
            cwd=ROOT,
        )
        print(f"\ninstalled version: {(home / 'version.txt').read_text().strip()}")
        app = home / "app"
        print("entry point output: ", end="", flush=True)
        subprocess.run([sys.executable, str(app / "initiate.py")], cwd=app)
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Hard cases for the install view, the bulk plan split and the kept records.

These check the folder-relative ``lstat`` of :class:`InstallView` against
links, special files and few descriptors, the bulk comparison in
``build_plan`` and the bulk listing records of ``new_listing`` against a
per-file statement of the same rules, and the lock's fallback to ``filelock``.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from conftest import installed_record, make_tree
from packaging.version import Version
from update_helpers import ROOT, publish_releases, update_in_process

from codemate_setup import install_view
from codemate_setup.config import HomeLayout
from codemate_setup.errors import InstallError, ManifestError
from codemate_setup.install_view import FileState, InstallView, PathKind
from codemate_setup.listing import InstalledFile, InstalledListing, load_listing
from codemate_setup.middleware import MiddlewareHandle
from codemate_setup.plan import OpKind, build_plan
from codemate_setup.state import lockfile
from codemate_setup.state.lockfile import StateLock
from codemate_setup.target import TargetFile, TargetState
from codemate_setup.update_install import new_listing

V3 = Version("3.0.0")
HAS_FD_FOLDER = Path("/proc/self/fd").is_dir()


def sha(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def run_script(script: str, root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a child interpreter with ``root`` as its argument."""
    return subprocess.run(
        [sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=30,
        check=True,
    )


class StatesView:
    """A disk view that reports fixed states for files at the install root."""

    def __init__(self, states: dict[str, FileState]) -> None:
        self._states = states

    def state(self, path: str) -> FileState:
        return self._states.get(path, FileState(PathKind.MISSING))

    def states(self, paths: Sequence[str]) -> list[FileState]:
        return [self.state(path) for path in paths]

    def kind(self, path: str) -> PathKind:
        return self.state(path).kind

    def tree(self, folder: str) -> list[tuple[str, PathKind]]:
        return []


# Install view: folders reached through descriptors


def test_view_link_folder_inside_matches_real(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"pkg/a.py": "a", "pkg/b.py": "b"})
    (root / "alias").symlink_to("pkg", target_is_directory=True)
    paths = ["alias/a.py", "pkg/a.py", "alias/b.py", "alias/gone.py"]

    states = InstallView(root).states(paths)

    assert states[0] == states[1]
    assert states[2].sha256 == sha("b")
    assert states[3].kind is PathKind.MISSING


def test_view_link_folder_outside_rejected(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"a.py": "a"})
    make_tree(tmp_path / "outside", {"x.py": "secret"})
    (root / "out").symlink_to(tmp_path / "outside", target_is_directory=True)

    with pytest.raises(ManifestError, match="resolves outside"):
        InstallView(root).states(["a.py", "out/x.py"])


@pytest.mark.xfail(
    strict=True,
    reason="the scan follows a folder swapped for a link after the proof, "
    "as the moves of an update do",
)
def test_view_folder_swapped_for_link_after_proof(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path / "app", {"pkg/a.py": "inside"})
    outside = make_tree(tmp_path / "outside", {"a.py": "secret"})
    view = InstallView(root)
    prove = view._inside.prove_all

    def prove_then_swap(paths: Sequence[str]) -> None:
        prove(paths)
        if not (root / "pkg").is_symlink():
            (root / "pkg").rename(root / "pkg.old")
            (root / "pkg").symlink_to(outside, target_is_directory=True)

    monkeypatch.setattr(view._inside, "prove_all", prove_then_swap)

    try:
        states = view.states(["pkg/a.py"])
    except ManifestError:
        return
    # The file outside the install folder must not be read or described.
    assert states[0].sha256 != sha("secret")


def test_view_fifo_as_folder_does_not_block(tmp_path: Path) -> None:
    # Opening a FIFO without O_DIRECTORY would wait for a writer, so the
    # scan runs in a child process with a timeout.
    root = make_tree(tmp_path / "app", {"a.py": "a"})
    os.mkfifo(root / "fifo")
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from codemate_setup.install_view import InstallView
        states = InstallView(Path(sys.argv[1])).states(["fifo/x.py", "a.py", "fifo"])
        print(" ".join(state.kind.value for state in states))
        """
    )

    child = run_script(script, root)

    assert child.stdout.split() == ["missing", "file", "other"]


@pytest.mark.skipif(not HAS_FD_FOLDER, reason="needs /proc/self/fd")
def test_view_closes_folder_descriptors(tmp_path: Path) -> None:
    files = {f"d{i % 3}/f{i}.py": str(i) for i in range(12)}
    files["top.py"] = "top"
    root = make_tree(tmp_path / "app", files)
    (root / "loop").symlink_to("loop")
    # Folders alternate, so the cursor opens and closes each one many times.
    paths = sorted(files, key=lambda path: path.rpartition("/")[2])
    before = open_descriptors()

    InstallView(root).states(paths)
    after_scan = open_descriptors()
    with pytest.raises(InstallError, match="symbolic links"):
        InstallView(root).states([*paths, "loop/x.py"])
    after_error = open_descriptors()

    assert after_scan == before
    assert after_error == before


def test_view_hashes_with_one_descriptor_free(tmp_path: Path) -> None:
    # Hashing a file needs one free descriptor: the view closes its folder's
    # descriptor before it opens the file.
    root = make_tree(tmp_path / "app", {"pkg/a.py": "a"})
    script = textwrap.dedent(
        """
        import os, resource, sys
        from pathlib import Path
        from codemate_setup.install_view import InstallView
        view = InstallView(Path(sys.argv[1]))
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        filler = []
        while True:
            try:
                filler.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        os.close(filler.pop())
        try:
            state = view.states(["pkg/a.py"])[0]
        except Exception as e:
            print(f"{type(e).__name__}: {e}")
        else:
            print(state.kind.value, state.sha256)
        """
    )

    child = run_script(script, root)

    assert child.stdout.split() == ["file", sha("a")]


def test_view_fallback_matches_on_odd_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_tree(tmp_path / "app", {"a.py": "a", "pkg/b.py": "bb"})
    os.mkfifo(root / "pkg" / "pipe")
    os.link(root / "a.py", root / "pkg" / "hard.py")
    (root / "pkg" / "link.py").symlink_to("b.py")
    (root / "file").write_text("f")
    paths = ["pkg/pipe", "a.py", "pkg/hard.py", "pkg/link.py", "file/x.py", "pkg"]
    relative = InstallView(root).states(paths)
    monkeypatch.setattr(install_view, "_RELATIVE_LSTAT", False)

    whole = InstallView(root).states(paths)

    assert whole == relative
    kinds = [state.kind.value for state in relative]
    assert kinds == ["other", "file", "file", "symlink", "missing", "dir"]


def test_view_rehashes_same_size_new_mtime(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"pkg/a.py": "aaaa"})
    listing = InstalledListing("2", {"pkg/a.py": installed_record(root, "pkg/a.py")})
    (root / "pkg" / "a.py").write_text("bbbb")
    info = (root / "pkg" / "a.py").stat()
    os.utime(root / "pkg" / "a.py", ns=(info.st_atime_ns, info.st_mtime_ns + 1000))

    view = InstallView(root, listing)
    state = view.states(["pkg/a.py"])[0]

    assert state.sha256 == sha("bbbb")
    assert view.hashed == 1


# Plan and listing records against a per-file statement of the rules


def per_file_decision(state: FileState, expected: TargetFile) -> bool:
    return (
        state.kind is PathKind.FILE
        and expected.sha256 is not None
        and state.sha256 == expected.sha256
        and (expected.size is None or state.size == expected.size)
    )


def per_file_record(state: FileState, expected: TargetFile) -> InstalledFile:
    mode = state.mode if state.mode is not None else 0o644
    if expected.mode is not None:
        mode = expected.mode
    # A listing records permission bits only.
    mode &= 0o777
    return InstalledFile(state.sha256, state.size or 0, mode, state.mtime_ns or 0)


def state_cases() -> list[FileState]:
    files = [
        FileState(PathKind.FILE, digest, size, mode, 7)
        for digest, size, mode in itertools.product(
            [sha("a"), sha("b")], [1, 2], [0o644, 0o755, 0o4755]
        )
    ]
    others = [PathKind.SYMLINK, PathKind.OTHER, PathKind.MISSING]
    return files + [FileState(kind) for kind in others]


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes only")
@pytest.mark.parametrize("compare_modes", [True, False])
def test_plan_split_matches_per_file_logic(tmp_path: Path, compare_modes: bool) -> None:
    targets = itertools.product(
        [sha("a"), sha("c"), None], [1, 2, None], [0o644, 0o755, None]
    )
    cases = list(itertools.product(state_cases(), targets))
    states: dict[str, FileState] = {}
    files: dict[str, TargetFile] = {}
    for number, (state, (digest, size, mode)) in enumerate(cases):
        path = f"f{number:03}.py"
        states[path] = state
        files[path] = TargetFile(path, V3, digest, size, mode)
    target = TargetState(V3, files)

    plan = build_plan(target, None, StatesView(states), compare_modes=compare_modes)

    kept = {path for path in files if per_file_decision(states[path], files[path])}
    chmods = {
        (path, files[path].mode, states[path].mode)
        for path in kept
        if compare_modes
        and files[path].mode is not None
        and states[path].mode != files[path].mode
    }
    found_chmods = {
        (op.path, op.mode, op.old_mode) for op in plan.ops if op.kind is OpKind.CHMOD
    }
    assert set(plan.kept) == kept
    assert {file.path for file in plan.downloads} == set(files) - kept
    assert found_chmods == chmods

    layout = HomeLayout(home=tmp_path, install_dir=tmp_path / "app")
    kept_target = TargetState(V3, {path: files[path] for path in sorted(kept)})
    listing = new_listing(layout, V3, kept_target, plan, {})
    expected = {path: per_file_record(states[path], files[path]) for path in kept}
    assert listing.files == expected


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes only")
def test_update_listing_matches_disk(
    tmp_path: Path, start_middleware: Callable[..., MiddlewareHandle]
) -> None:
    old = {"top.py": "t1", "pkg/a.py": "a1", "pkg/run.sh": "echo", "lib/b.py": "b"}
    new = {"top.py": "t2", "pkg/a.py": "a1", "pkg/run.sh": "echo", "lib/b.py": "b"}
    releases = publish_releases(
        tmp_path / "releases",
        {"1.0.0": old, "1.1.0": new},
        {"1.0.0": {"pkg/run.sh": 0o644}, "1.1.0": {"pkg/run.sh": 0o755}},
    )
    server = start_middleware(releases)
    home = tmp_path / "home"
    update_in_process(home, server.url, "1.0.0")
    app = home / "app"
    # Same size and content, new mtime: the update must hash it again and
    # record the new mtime.
    info = (app / "lib" / "b.py").stat()
    os.utime(app / "lib" / "b.py", ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))

    result = update_in_process(home, server.url, "1.1.0")
    listing = load_listing(home / "installed.json")
    again = update_in_process(home, server.url, "1.1.0")

    assert result.files_placed == 1
    assert result.files_rehashed == 1
    assert listing is not None
    assert listing.files == {path: installed_record(app, path) for path in new}
    assert again.files_rehashed == 0
    assert again.files_placed == 0


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes only")
def test_legacy_update_listing_matches_disk(
    tmp_path: Path, start_middleware: Callable[..., MiddlewareHandle]
) -> None:
    old = {"top.py": "t1", "pkg/a.py": "a1", "pkg/run.sh": "echo"}
    new = {"top.py": "t2", "pkg/a.py": "a1", "pkg/run.sh": "echo"}
    releases = publish_releases(
        tmp_path / "releases",
        {"1.0.0": old, "1.1.0": new},
        {"1.0.0": {"pkg/run.sh": 0o755}, "1.1.0": {"pkg/run.sh": 0o755}},
    )
    server = start_middleware(releases, legacy=True)
    home = tmp_path / "home"
    update_in_process(home, server.url, "1.0.0")

    update_in_process(home, server.url, "1.1.0")
    document = json.loads((home / "installed.json").read_text())
    listing = load_listing(home / "installed.json")

    assert document["version"] == "1.1.0"
    assert listing is not None
    assert listing.files == {path: installed_record(home / "app", path) for path in new}


# The lock where flock is refused


def test_state_lock_fallback_without_flock_support(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.lock"

    def fail_flock(descriptor: int, timeout: float) -> bool:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lockfile, "_wait_for_flock", fail_flock)
    fallback = StateLock(path)
    token = fallback.acquire(1.0)
    monkeypatch.undo()
    # filelock takes the same flock, so a flock user now finds it busy.
    busy = StateLock(path).acquire(0.05)
    fallback.release(token)
    free = StateLock(path).acquire(0.05)

    assert token == -1
    assert busy is None
    assert free is not None and free >= 0
    StateLock(path).release(free)

"""The installed listing that an update writes after its moves."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import installed_record, make_tree
from packaging.version import Version

from codemate_setup.config import HomeLayout
from codemate_setup.install_view import InstallView
from codemate_setup.listing import (
    InstalledListing,
    load_listing,
    save_listing,
)
from codemate_setup.plan import build_plan
from codemate_setup.target import TargetFile, TargetState
from codemate_setup.update_install import new_listing

V3 = Version("3.0.0")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def layout_with(tmp_path: Path, files: dict[str, str]) -> HomeLayout:
    layout = HomeLayout(home=tmp_path, install_dir=tmp_path / "app")
    make_tree(layout.install_dir, files, dict.fromkeys(files, 0o644))
    return layout


def test_new_listing_keeps_recorded_state(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, {"a.py": "a", "pkg/b.py": "b"})
    root = layout.install_dir
    owned = {path: installed_record(root, path) for path in ("a.py", "pkg/b.py")}
    target = TargetState(
        V3,
        {
            "a.py": TargetFile("a.py", V3, sha(b"a"), 1, 0o644),
            "pkg/b.py": TargetFile("pkg/b.py", V3, sha(b"b"), 1, 0o644),
        },
    )
    plan = build_plan(target, owned, InstallView(root, InstalledListing("2", owned)))

    listing = new_listing(layout, V3, target, plan, {})

    assert listing.files == owned


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes only")
def test_new_listing_records_changed_mode(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, {"run.sh": "echo"})
    root = layout.install_dir
    owned = {"run.sh": installed_record(root, "run.sh")}
    target = TargetState(
        V3, {"run.sh": TargetFile("run.sh", V3, sha(b"echo"), 4, 0o755)}
    )
    plan = build_plan(target, owned, InstallView(root, InstalledListing("2", owned)))

    listing = new_listing(layout, V3, target, plan, {})

    assert listing.files["run.sh"] == owned["run.sh"]._replace(mode=0o755)


def test_new_listing_records_placed_file(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, {"a.py": "old"})
    root = layout.install_dir
    owned = {"a.py": installed_record(root, "a.py")}
    target = TargetState(V3, {"a.py": TargetFile("a.py", V3, sha(b"new"), 3, 0o644)})
    plan = build_plan(target, owned, InstallView(root, InstalledListing("2", owned)))
    # The update's step 8 puts the new file in place.
    (root / "a.py").write_bytes(b"new")

    listing = new_listing(layout, V3, target, plan, {"a.py": (sha(b"new"), 3)})

    assert listing.files["a.py"] == installed_record(root, "a.py")


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes only")
def test_new_listing_leaves_out_setuid_bit(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, {"run.sh": "echo"})
    root = layout.install_dir
    (root / "run.sh").chmod(0o4755)
    owned = {"run.sh": installed_record(root, "run.sh")._replace(mode=0o755)}
    # A legacy target declares no mode, so the file is kept as found.
    target = TargetState(
        V3, {"run.sh": TargetFile("run.sh", V3, sha(b"echo"), 4, None)}
    )
    plan = build_plan(target, owned, InstallView(root, InstalledListing("2", owned)))

    listing = new_listing(layout, V3, target, plan, {})
    save_listing(layout.installed_listing, listing)

    assert load_listing(layout.installed_listing) == listing

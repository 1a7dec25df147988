"""Planning: which files to download and which moves apply them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import make_tree
from packaging.version import Version

from codemate_setup import install_view
from codemate_setup.errors import InstallError, ManifestError
from codemate_setup.install_view import InstallView
from codemate_setup.listing import InstalledFile, InstalledListing
from codemate_setup.manifest import Manifest, ManifestEntry
from codemate_setup.plan import Op, OpKind, build_plan, plan_restore
from codemate_setup.target import (
    ChangeKind,
    TargetFile,
    TargetState,
    classify_change,
    fold_manifests,
    legacy_chain,
)

V2 = Version("2.0.0")
V3 = Version("3.0.0")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def target_of(files: dict[str, bytes], version: Version = V3) -> TargetState:
    return TargetState(
        version=version,
        files={
            path: TargetFile(path, version, sha(data), len(data), 0o644)
            for path, data in files.items()
        },
    )


def listing_of(root: Path, paths: list[str]) -> dict[str, InstalledFile]:
    owned = {}
    for path in paths:
        file = root / path
        info = file.stat()
        owned[path] = InstalledFile(
            sha(file.read_bytes()), info.st_size, info.st_mode & 0o777, info.st_mtime_ns
        )
    return owned


def plan_for(
    root: Path, target: TargetState, owned: dict[str, InstalledFile] | None
) -> tuple[list[tuple[str, str]], list[str]]:
    listing = InstalledListing("2.0.0", owned) if owned is not None else None
    plan = build_plan(target, owned, InstallView(root, listing))
    moves = [(op.kind.value, op.path) for op in plan.ops]
    return moves, [item.path for item in plan.downloads]


def test_plan_fresh_install(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()

    moves, downloads = plan_for(root, target_of({"a.py": b"a", "pkg/b.py": b"b"}), None)

    assert downloads == ["a.py", "pkg/b.py"]
    assert moves == [("mkdir", "pkg"), ("place", "a.py"), ("place", "pkg/b.py")]


def test_plan_unchanged_install_is_empty(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"a.py": "a", "pkg/b.py": "b"})
    for path in ("a.py", "pkg/b.py"):
        (root / path).chmod(0o644)
    owned = listing_of(root, ["a.py", "pkg/b.py"])
    listing = InstalledListing("3.0.0", owned)
    view = InstallView(root, listing)

    plan = build_plan(target_of({"a.py": b"a", "pkg/b.py": b"b"}), owned, view)

    assert plan.is_empty
    assert view.hashed == 0
    assert sorted(plan.kept) == ["a.py", "pkg/b.py"]


def test_plan_one_changed_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"a.py": "a", "b.py": "b"})
    owned = listing_of(root, ["a.py", "b.py"])

    moves, downloads = plan_for(root, target_of({"a.py": b"a", "b.py": b"B"}), owned)

    assert downloads == ["b.py"]
    assert moves == [("backup", "b.py"), ("place", "b.py")]


def test_plan_rehashes_only_moved_files(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"a.py": "a", "b.py": "b"})
    owned = listing_of(root, ["a.py", "b.py"])
    (root / "b.py").write_text("edited by hand")
    view = InstallView(root, InstalledListing("3.0.0", owned))

    plan = build_plan(target_of({"a.py": b"a", "b.py": b"b"}), owned, view)

    assert view.hashed == 1
    assert [item.path for item in plan.downloads] == ["b.py"]


def test_view_states_match_state_one_at_a_time(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": b"a", "pkg/b.py": b"bb", "pkg/c.py": b"c"})
    (tmp_path / "dir").mkdir()
    listing = InstalledListing("2.0.0", listing_of(tmp_path, ["a.py", "pkg/b.py"]))
    (tmp_path / "pkg" / "b.py").write_bytes(b"BB")
    paths = ["a.py", "dir", "missing.py", "pkg/b.py", "pkg/c.py"]

    view = InstallView(tmp_path, listing)
    states = view.states(paths)

    assert states == [InstallView(tmp_path, listing).state(p) for p in paths]
    assert [s.kind.value for s in states] == ["file", "dir", "missing", "file", "file"]
    assert states[3].sha256 == sha(b"BB")
    assert view.hashed == 2


def test_view_states_in_missing_or_blocked_folders(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.py": b"a", "pkg/b.py": b"b", "pkg/c.py": b"c"})
    listing = InstalledListing("2.0.0", listing_of(tmp_path, ["a.py", "pkg/b.py"]))
    # Folders alternate, so the view leaves a folder and comes back to it.
    paths = ["pkg/b.py", "a.py", "pkg/c.py", "gone/x.py", "a.py/x.py"]

    states = InstallView(tmp_path, listing).states(paths)

    kinds = [state.kind.value for state in states]
    assert kinds == ["file", "file", "file", "missing", "missing"]


def test_view_states_without_folder_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path, {"a.py": b"a", "pkg/b.py": b"b", "pkg/c.py": b"c"})
    listing = InstalledListing("2.0.0", listing_of(tmp_path, ["a.py", "pkg/b.py"]))
    paths = ["a.py", "gone/x.py", "pkg/b.py", "pkg/c.py"]
    expected = InstallView(tmp_path, listing).states(paths)
    # Where lstat takes no folder descriptor (Windows), whole paths are used.
    monkeypatch.setattr(install_view, "_RELATIVE_LSTAT", False)

    view = InstallView(tmp_path, listing)

    assert view.states(paths) == expected


def test_plan_keeps_file_of_target_without_size(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"a.py": "a"}, {"a.py": 0o644})
    owned = listing_of(root, ["a.py"])
    target = target_of({"a.py": b"a"})
    target.files["a.py"] = TargetFile("a.py", V3, sha(b"a"), None, 0o644)

    plan = build_plan(target, owned, InstallView(root))

    assert list(plan.kept) == ["a.py"]


def test_plan_deletes_owned_file_only(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"a.py": "a", "old.py": "o", ".env": "secret"})
    owned = listing_of(root, ["a.py", "old.py"])

    moves, downloads = plan_for(root, target_of({"a.py": b"a"}), owned)

    assert downloads == []
    assert moves == [("backup", "old.py")]


def test_plan_user_file_at_target_path(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"notes.txt": "mine"})

    moves, downloads = plan_for(root, target_of({"notes.txt": b"release"}), {})

    assert downloads == ["notes.txt"]
    assert moves == [("backup", "notes.txt"), ("place", "notes.txt")]


def test_plan_keeps_matching_unowned_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"a.py": "a"})
    (root / "a.py").chmod(0o644)

    moves, downloads = plan_for(root, target_of({"a.py": b"a"}), None)

    assert downloads == []
    assert moves == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes only")
def test_plan_mode_only_change(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"run.sh": "echo"}, {"run.sh": 0o644})
    owned = listing_of(root, ["run.sh"])
    target = target_of({"run.sh": b"echo"})
    target.files["run.sh"] = TargetFile("run.sh", V3, sha(b"echo"), 4, 0o755)

    plan = build_plan(target, owned, InstallView(root))

    assert plan.downloads == ()
    assert plan.ops == (Op(OpKind.CHMOD, "run.sh", 0o755, 0o644),)


def test_plan_file_replaced_by_folder(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"tools": "was a file"})
    owned = listing_of(root, ["tools"])

    moves, _ = plan_for(root, target_of({"tools/run.py": b"r"}), owned)

    assert moves == [("backup", "tools"), ("mkdir", "tools"), ("place", "tools/run.py")]


def test_plan_folder_replaced_by_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"tools/a.py": "a", "tools/sub/b.py": "b"})
    owned = listing_of(root, ["tools/a.py", "tools/sub/b.py"])

    moves, _ = plan_for(root, target_of({"tools": b"now a file"}), owned)

    assert moves == [
        ("backup", "tools/a.py"),
        ("backup", "tools/sub/b.py"),
        ("rmdir", "tools/sub"),
        ("rmdir", "tools"),
        ("place", "tools"),
    ]


def test_plan_folder_with_user_file_blocks(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"tools/a.py": "a", "tools/mine.txt": "m"})
    owned = listing_of(root, ["tools/a.py"])

    with pytest.raises(InstallError) as caught:
        plan_for(root, target_of({"tools": b"file"}), owned)

    assert "'tools/mine.txt', which no installed release owns" in str(caught.value)


def test_plan_unowned_file_blocks_folder(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"data": "user file"})

    with pytest.raises(InstallError) as caught:
        plan_for(root, target_of({"data/x.py": b"x"}), {})

    assert "'data' is a file that no installed release owns" in str(caught.value)


def test_plan_removes_emptied_folders(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"a.py": "a", "old/deep/x.py": "x"})
    owned = listing_of(root, ["a.py", "old/deep/x.py"])

    moves, _ = plan_for(root, target_of({"a.py": b"a"}), owned)

    assert moves == [
        ("backup", "old/deep/x.py"),
        ("rmdir", "old/deep"),
        ("rmdir", "old"),
    ]


def test_plan_keeps_folder_with_user_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"old/x.py": "x", "old/mine.txt": "m"})
    owned = listing_of(root, ["old/x.py"])

    moves, _ = plan_for(root, target_of({}), owned)

    assert moves == [("backup", "old/x.py")]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_plan_rejects_symlink_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "app"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)

    with pytest.raises(ManifestError) as caught:
        plan_for(root, target_of({"link/evil.py": b"x"}), None)

    assert "resolves outside" in str(caught.value)
    assert list(outside.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_plan_replaces_link_not_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    root = tmp_path / "app"
    root.mkdir()
    (root / "a.py").symlink_to(outside)

    moves, _ = plan_for(root, target_of({"a.py": b"a"}), None)

    assert moves == [("backup", "a.py"), ("place", "a.py")]


def manifest(
    version: str,
    *,
    add: tuple[str, ...] = (),
    edit: tuple[str, ...] = (),
    delete: tuple[str, ...] = (),
    files: tuple[ManifestEntry, ...] | None = None,
) -> Manifest:
    return Manifest(
        version=Version(version),
        previous_version=None,
        files=files,
        added=tuple(ManifestEntry(p) for p in add),
        edited=tuple(ManifestEntry(p) for p in edit),
        deleted=delete,
        requirements=None,
        entry_point=None,
    )


def test_fold_legacy_chain_in_order() -> None:
    chain = [
        manifest("2.1.0", add=("new.py",), edit=("main.py",), delete=("old.py",)),
        manifest("2.2.0", edit=("new.py",), delete=("gone.py",)),
        manifest("3.0.0", add=("gone.py",)),
    ]
    installed = {
        name: InstalledFile(sha(name.encode()), 1, 0o644, 1)
        for name in ("main.py", "old.py", "gone.py", "kept.py")
    }

    state = fold_manifests(chain, installed, V2)

    sources = {path: str(f.version) for path, f in state.files.items()}
    assert sources == {
        "main.py": "2.1.0",
        "new.py": "2.2.0",
        "gone.py": "3.0.0",
        "kept.py": "2.0.0",
    }
    assert state.deleted == frozenset({"old.py"})
    assert state.files["kept.py"].sha256 == sha(b"kept.py")


def test_fold_file_replaced_by_folder() -> None:
    chain = [
        manifest("2.0.0", add=("tools",)),
        manifest("3.0.0", add=("tools/run.py",), delete=("tools",)),
    ]

    state = fold_manifests(chain)

    assert sorted(state.files) == ["tools/run.py"]


def test_fold_inconsistent_chain_rejected() -> None:
    chain = [manifest("2.0.0", add=("tools",)), manifest("3.0.0", add=("tools/x",))]

    with pytest.raises(ManifestError) as caught:
        fold_manifests(chain)

    assert "inconsistent" in str(caught.value)


def test_fold_full_listing_replaces_history() -> None:
    entry = ManifestEntry("only.py", "c" * 64, 3, 0o644)
    chain = [manifest("2.1.0", add=("x.py",)), manifest("3.0.0", files=(entry,))]

    state = fold_manifests(chain)

    assert list(state.files) == ["only.py"]
    assert state.files["only.py"].sha256 == "c" * 64


def test_legacy_chain_selects_range() -> None:
    versions = [Version(v) for v in ("1.0", "2.0", "2.5", "3.0", "4.0")]

    assert legacy_chain(versions, Version("2.0"), Version("3.0")) == [
        Version("2.5"),
        Version("3.0"),
    ]
    assert legacy_chain(versions, None, Version("2.0")) == [
        Version("1.0"),
        Version("2.0"),
    ]


def test_legacy_chain_unknown_target() -> None:
    with pytest.raises(ManifestError):
        legacy_chain([Version("1.0")], None, Version("2.0"))


@pytest.mark.parametrize(
    ("installed", "target", "kind"),
    [
        (None, "3.0.0", ChangeKind.INSTALL),
        ("3.0.0", "3.0.0", ChangeKind.SAME),
        ("2.9.0", "2.10.0", ChangeKind.UPGRADE),
        ("2.9.0", "3.0.0", ChangeKind.MAJOR_UPGRADE),
        ("3.0.0", "2.9.0", ChangeKind.DOWNGRADE),
    ],
)
def test_classify_change_kinds(
    installed: str | None, target: str, kind: ChangeKind
) -> None:
    parsed = Version(installed) if installed else None

    assert classify_change(parsed, Version(target)) is kind


def test_plan_restore_inverts_update(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"tools/run.py": "new", "b.py": "new b"})
    recorded = (
        Op(OpKind.BACKUP, "b.py"),
        Op(OpKind.BACKUP, "tools"),
        Op(OpKind.BACKUP, "gone.py"),
        Op(OpKind.MKDIR, "tools"),
        Op(OpKind.PLACE, "b.py", 0o644),
        Op(OpKind.PLACE, "tools/run.py", 0o644),
    )

    plan = plan_restore(recorded, InstallView(root))

    assert [(op.kind.value, op.path) for op in plan.ops] == [
        ("backup", "b.py"),
        ("backup", "tools/run.py"),
        ("rmdir", "tools"),
        ("place", "b.py"),
        ("place", "gone.py"),
        ("place", "tools"),
    ]


def test_plan_restore_keeps_folder_with_user_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "app", {"pkg/new.py": "n", "pkg/mine.txt": "m"})
    recorded = (Op(OpKind.MKDIR, "pkg"), Op(OpKind.PLACE, "pkg/new.py", 0o644))

    plan = plan_restore(recorded, InstallView(root))

    assert [(op.kind.value, op.path) for op in plan.ops] == [("backup", "pkg/new.py")]

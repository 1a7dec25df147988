"""Endpoints of the reference middleware, over a real loopback socket."""

from __future__ import annotations

import http.client
import json
import os
import shutil
from pathlib import Path

import pytest
import requests

from codemate_setup.errors import UsageError
from codemate_setup.middleware import start_middleware as start_directly
from codemate_setup.publish import publish_release

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "releases-src"


def get(handle, path: str, **kwargs) -> requests.Response:
    return requests.get(f"{handle.url}{path}", timeout=10, **kwargs)


def test_health_counts_releases(middleware):
    response = get(middleware, "/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "releases": 2}


def test_releases_lists_summaries(middleware):
    response = get(middleware, "/releases")
    by_version = {entry["version"]: entry for entry in response.json()}

    assert response.status_code == 200
    assert sorted(by_version) == ["2.9.0", "3.0.0"]
    assert by_version["3.0.0"]["previous_version"] == "2.9.0"
    assert by_version["2.9.0"]["previous_version"] is None
    assert by_version["3.0.0"]["file_count"] == 8
    assert set(by_version["3.0.0"]) == {
        "version",
        "previous_version",
        "file_count",
        "total_bytes",
    }


def test_codebase_returns_release_info(middleware, example_releases):
    response = get(middleware, "/codebase/v3.0.0")
    stored = json.loads((example_releases / "3.0.0" / "release.json").read_text())

    assert response.status_code == 200
    assert response.json() == stored
    assert "published_at" in response.json()


def test_manifest_returns_full_listing(middleware, example_releases):
    response = get(middleware, "/manifest/v3.0.0")
    stored = json.loads((example_releases / "3.0.0" / "manifest.json").read_text())

    assert response.status_code == 200
    assert response.json() == stored
    assert response.headers["Content-Type"].startswith("application/json")


def test_manifest_accepts_version_without_prefix(middleware):
    response = get(middleware, "/manifest/3.0.0")

    assert response.status_code == 200
    assert response.json()["version"] == "3.0.0"


def test_manifest_ignores_repo_query(middleware):
    response = get(middleware, "/manifest/v3.0.0?repo=codemate&other=1")

    assert response.status_code == 200
    assert middleware.requests[-1].query == "repo=codemate&other=1"
    assert middleware.requests[-1].path == "/manifest/v3.0.0"


def test_legacy_manifest_has_plain_lists(example_releases, start_middleware):
    handle = start_middleware(example_releases, legacy=True)

    manifest = get(handle, "/manifest/v3.0.0").json()

    assert set(manifest) == {
        "version",
        "previous_version",
        "codebase",
        "requirements",
        "entry_point",
    }
    assert manifest["codebase"] == {
        "files_add": ["codemate/chat.py", "config/defaults.json"],
        "files_edit": ["codemate/__init__.py", "codemate/core.py"],
        "files_delete": ["codemate/legacy_utils.py"],
    }
    assert manifest["requirements"] == "requirements.txt"
    assert manifest["entry_point"] == "initiate.py"
    assert "sha256" not in json.dumps(manifest)


def test_legacy_download_still_serves_files(example_releases, start_middleware):
    handle = start_middleware(example_releases, legacy=True)

    response = get(handle, "/download/v2.9.0/codemate/legacy_utils.py")

    assert response.status_code == 200
    assert (
        response.content == (EXAMPLES / "2.9.0/codemate/legacy_utils.py").read_bytes()
    )


def test_download_sends_exact_bytes(middleware):
    expected = (EXAMPLES / "3.0.0" / "assets" / "logo.png").read_bytes()

    response = get(middleware, "/download/v3.0.0/assets/logo.png")

    assert response.status_code == 200
    assert response.content == expected
    assert response.headers["Content-Length"] == str(len(expected))
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert "Content-Encoding" not in response.headers
    assert response.headers["ETag"].startswith('"')


def test_download_ignores_gzip_request(middleware):
    response = get(
        middleware,
        "/download/v3.0.0/README.md",
        headers={"Accept-Encoding": "gzip, deflate, br"},
    )

    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert response.content == (EXAMPLES / "3.0.0" / "README.md").read_bytes()


def test_download_head_sends_no_body(middleware):
    response = requests.head(f"{middleware.url}/download/v3.0.0/README.md", timeout=10)

    size = (EXAMPLES / "3.0.0" / "README.md").stat().st_size
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(size)
    assert response.content == b""
    assert middleware.requests[-1].bytes_sent == 0


def test_download_requirements_file(middleware):
    response = get(middleware, "/download/v3.0.0/requirements.txt")

    assert response.status_code == 200
    assert response.text.startswith("#")


def test_download_empty_file(tmp_path, make_tree, start_middleware):
    releases = tmp_path / "releases"
    publish_release(
        make_tree(tmp_path / "src", {"empty.txt": b"", "a.txt": "a"}),
        "1.0.0",
        releases,
        durable=False,
    )
    handle = start_middleware(releases)

    response = get(handle, "/download/v1.0.0/empty.txt")

    assert response.status_code == 200
    assert response.headers["Content-Length"] == "0"
    assert response.content == b""


def test_download_non_ascii_name(tmp_path, make_tree, start_middleware):
    releases = tmp_path / "releases"
    publish_release(
        make_tree(tmp_path / "src", {"docs/größe ü.txt": "umlaut"}),
        "1.0.0",
        releases,
        durable=False,
    )
    handle = start_middleware(releases)

    response = get(handle, "/download/v1.0.0/docs/gr%C3%B6%C3%9Fe%20%C3%BC.txt")

    assert response.status_code == 200
    assert response.text == "umlaut"


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/manifest/v9.9.9", 404, "release 9.9.9 not found"),
        ("/codebase/v9.9.9", 404, "release 9.9.9 not found"),
        ("/download/v9.9.9/README.md", 404, "release 9.9.9 not found"),
        ("/download/v3.0.0/missing.py", 404, "file 'missing.py' not found"),
        ("/download/v3.0.0/codemate", 404, "file 'codemate' not found"),
        ("/manifest/vbanana", 400, "invalid version 'vbanana'"),
        ("/download/v3.0.0/", 400, "unsafe manifest path ''"),
        ("/nothing/here", 404, "no endpoint at '/nothing/here'"),
        ("/manifest/v3.0.0/extra", 404, "no endpoint"),
    ],
    ids=[
        "manifest-unknown-version",
        "codebase-unknown-version",
        "download-unknown-version",
        "download-unknown-file",
        "download-folder",
        "invalid-version",
        "empty-path",
        "unknown-endpoint",
        "extra-segment",
    ],
)
def test_errors_are_json(middleware, path, status, message):
    response = get(middleware, path)

    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["status"] == status
    assert message in response.json()["error"]


def test_post_gets_json_501(middleware):
    response = requests.post(f"{middleware.url}/health", data=b"x", timeout=10)

    assert response.status_code == 501
    assert response.json()["status"] == 501


def test_get_with_body_closes_connection(middleware):
    connection = http.client.HTTPConnection("127.0.0.1", middleware.port, timeout=10)
    connection.request("GET", "/health", body=b"unexpected body")
    response = connection.getresponse()
    body = response.read()
    connection.close()

    assert response.status == 200
    assert json.loads(body)["status"] == "ok"
    assert response.will_close


def test_release_published_while_serving(tmp_path, make_tree, start_middleware):
    releases = tmp_path / "releases"
    releases.mkdir()
    handle = start_middleware(releases)
    assert get(handle, "/manifest/v1.0.0").status_code == 404

    publish_release(
        make_tree(tmp_path / "src", {"a.txt": "a"}), "1.0.0", releases, durable=False
    )

    assert get(handle, "/manifest/v1.0.0").status_code == 200
    assert get(handle, "/health").json()["releases"] == 1


def test_release_published_after_listing_kept(tmp_path, make_tree, start_middleware):
    releases = tmp_path / "releases"
    releases.mkdir()
    # An old modification time lets the server keep its listing of the folder.
    os.utime(releases, (1_000_000_000, 1_000_000_000))
    handle = start_middleware(releases)
    assert get(handle, "/health").json()["releases"] == 0

    publish_release(
        make_tree(tmp_path / "src", {"a.txt": "a"}), "1.0.0", releases, durable=False
    )

    assert get(handle, "/manifest/v1.0.0").status_code == 200


def test_release_removed_after_listing_kept(tmp_path, make_tree, start_middleware):
    releases = tmp_path / "releases"
    tree = make_tree(tmp_path / "src", {"a.txt": "a"})
    publish_release(tree, "1.0.0", releases, durable=False)
    os.utime(releases, (1_000_000_000, 1_000_000_000))
    handle = start_middleware(releases)
    assert get(handle, "/manifest/v1.0.0").status_code == 200

    shutil.rmtree(releases / "1.0.0")

    assert get(handle, "/manifest/v1.0.0").status_code == 404


def test_damaged_release_gets_500(example_releases, start_middleware):
    (example_releases / "3.0.0" / "release.json").write_text("{not json")
    handle = start_middleware(example_releases)

    codebase = get(handle, "/codebase/v3.0.0")
    listed = [entry["version"] for entry in get(handle, "/releases").json()]

    assert codebase.status_code == 500
    assert "damaged" in codebase.json()["error"]
    assert listed == ["2.9.0"]


def test_json_etag_revalidation(middleware):
    first = get(middleware, "/manifest/v3.0.0")

    again = get(
        middleware, "/manifest/v3.0.0", headers={"If-None-Match": first.headers["ETag"]}
    )

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == first.headers["ETag"]


def test_download_etag_revalidation(middleware):
    first = get(middleware, "/download/v3.0.0/codemate/core.py")

    again = get(
        middleware,
        "/download/v3.0.0/codemate/core.py",
        headers={"If-None-Match": first.headers["ETag"]},
    )

    assert again.status_code == 304
    assert again.content == b""
    assert middleware.requests[-1].bytes_sent == 0


def test_download_stale_etag_gets_body(middleware):
    response = get(
        middleware,
        "/download/v3.0.0/codemate/core.py",
        headers={"If-None-Match": '"stale"'},
    )

    assert response.status_code == 200
    assert response.content == (EXAMPLES / "3.0.0/codemate/core.py").read_bytes()


def test_etag_changes_with_content(example_releases, start_middleware):
    handle = start_middleware(example_releases)
    target = example_releases / "3.0.0" / "files" / "README.md"
    before = get(handle, "/download/v3.0.0/README.md").headers["ETag"]

    target.write_bytes(target.read_bytes() + b"more\n")
    after = get(handle, "/download/v3.0.0/README.md").headers["ETag"]

    assert before != after


def test_keep_alive_reuses_connection(middleware):
    connection = http.client.HTTPConnection("127.0.0.1", middleware.port, timeout=10)
    sockets = []
    for path in ("/health", "/download/v3.0.0/README.md", "/manifest/v3.0.0"):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        sockets.append(connection.sock)
    connection.close()

    assert sockets[0] is not None
    assert sockets[1] is sockets[0]
    assert sockets[2] is sockets[0]


def test_requests_are_recorded(middleware):
    get(middleware, "/download/v3.0.0/README.md", headers={"Range": "bytes=0-9"})

    record = middleware.requests[-1]
    assert record.method == "GET"
    assert record.path == "/download/v3.0.0/README.md"
    assert record.status == 206
    assert record.bytes_sent == 10
    assert record.range_header == "bytes=0-9"
    assert record.range == "bytes=0-9"


def test_start_missing_folder_raises(tmp_path):
    with pytest.raises(UsageError, match="releases folder .* not found"):
        start_directly(tmp_path / "absent")


def test_start_port_in_use_raises(example_releases, start_middleware):
    handle = start_middleware(example_releases)

    with pytest.raises(
        UsageError, match=f"cannot listen on 127.0.0.1 port {handle.port}"
    ):
        start_directly(example_releases, port=handle.port)


def test_stop_twice_is_harmless(example_releases):
    handle = start_directly(example_releases)

    handle.stop()
    handle.stop()

    with pytest.raises(requests.ConnectionError):
        requests.get(f"{handle.url}/health", timeout=5)


def test_context_manager_stops(example_releases):
    with start_directly(example_releases) as handle:
        assert get(handle, "/health").status_code == 200

    with pytest.raises(requests.ConnectionError):
        requests.get(f"{handle.url}/health", timeout=5)


def test_ipv6_loopback_url(example_releases, start_middleware):
    try:
        handle = start_middleware(example_releases, host="::1")
    except UsageError:
        pytest.skip("IPv6 loopback is not available on this machine")

    assert handle.url.startswith("http://[::1]:")
    assert get(handle, "/health").status_code == 200


def test_manifest_rewritten_while_serving_is_sent_new(
    example_releases, start_middleware
):
    handle = start_middleware(example_releases)
    manifest = example_releases / "3.0.0" / "manifest.json"
    before = get(handle, "/manifest/v3.0.0")
    document = json.loads(manifest.read_bytes())
    document["entry_point"] = "start_here.py"

    manifest.write_text(json.dumps(document))
    after = get(handle, "/manifest/v3.0.0")

    assert after.json()["entry_point"] == "start_here.py"
    assert after.headers["ETag"] != before.headers["ETag"]


def test_manifest_sent_twice_is_the_same_body(middleware):
    first = get(middleware, "/manifest/v3.0.0")
    second = get(middleware, "/manifest/v3.0.0")

    assert second.content == first.content
    assert second.headers["ETag"] == first.headers["ETag"]

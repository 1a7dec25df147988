"""Tests of the middleware client against the reference and scripted servers."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.version import Version
from scripted_server import ScriptedRequest, ScriptedResponse, ScriptedServer

from codemate_setup.client import MiddlewareClient
from codemate_setup.config import Limits
from codemate_setup.errors import ExitCode, ManifestError, MiddlewareError, UsageError
from codemate_setup.middleware import FaultConfig
from codemate_setup.middleware_url import is_loopback_host, validate_base_url
from codemate_setup.publish import publish_release

FAST = Limits(
    backoff_base=0.01,
    backoff_max=0.02,
    max_retry_after=0.1,
    max_retries=2,
    connect_timeout=2.0,
    read_timeout=2.0,
)
V1 = Version("1.0.0")


@pytest.fixture
def served(tmp_path, make_tree, start_middleware):
    releases = tmp_path / "releases"
    tree = make_tree(tmp_path / "src", {"main.py": "print('hi')\n", "pkg/a b.py": "x"})
    publish_release(tree, "1.0.0", releases, durable=False)
    return start_middleware(releases)


def closed_port() -> int:
    """Return a loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def json_server(document: object, **response: object) -> ScriptedServer:
    body = json.dumps(document).encode()
    return ScriptedServer(lambda request: ScriptedResponse(body=body, **response))


# Base URL validation


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "invalid middleware URL ''"),
        ("ftp://127.0.0.1/", "invalid middleware URL 'ftp://127.0.0.1/'"),
        ("http://", "invalid middleware URL 'http://'"),
        ("127.0.0.1:8000", "invalid middleware URL '127.0.0.1:8000'"),
        ("http://127.0.0.1:99999", "invalid middleware URL"),
        ("http://127.0.0.1:8000/?repo=x", "must not contain a query"),
        (
            "http://updates.example.com",
            "the middleware URL must use https for a host that is not on "
            "loopback, got http://updates.example.com; use https or pass "
            "--allow-insecure-http",
        ),
    ],
    ids=["empty", "ftp", "no-host", "no-scheme", "bad-port", "query", "remote-http"],
)
def test_base_url_invalid_cases(url: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        MiddlewareClient(url)

    assert message in str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE


def test_base_url_hides_password_in_error() -> None:
    with pytest.raises(UsageError) as caught:
        validate_base_url("http://bob:hunter2@updates.example.com")

    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "suggested"),
    [
        ("127.0.0.1:8000", "did you mean http://127.0.0.1:8000?"),
        ("localhost:8000/api", "did you mean http://localhost:8000/api?"),
        ("updates.example.com", "did you mean https://updates.example.com?"),
    ],
)
def test_base_url_without_scheme_suggests_one(url: str, suggested: str) -> None:
    with pytest.raises(UsageError) as caught:
        validate_base_url(url)

    assert suggested in str(caught.value)


def test_base_url_without_scheme_hides_password() -> None:
    with pytest.raises(UsageError) as caught:
        validate_base_url("bob:hunter2@127.0.0.1:8000")

    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("https://updates.example.com/api/", "https://updates.example.com/api"),
    ],
)
def test_base_url_accepted_forms(url: str, expected: str) -> None:
    assert validate_base_url(url) == expected


def test_base_url_insecure_allowed_by_flag() -> None:
    url = validate_base_url("http://updates.example.com", allow_insecure_http=True)

    assert url == "http://updates.example.com"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback_host_table(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_client_rejects_empty_repo() -> None:
    with pytest.raises(UsageError, match="invalid repo"):
        MiddlewareClient("http://127.0.0.1:8000", repo=" ")


# Session set-up


def test_session_pool_covers_workers() -> None:
    limits = Limits(download_workers=24)
    with MiddlewareClient("http://127.0.0.1:8000", limits=limits) as client:
        adapter = client.session.get_adapter("http://127.0.0.1:8000/")

        assert adapter._pool_maxsize >= 24
        assert client.session.verify is True
        assert client.session.trust_env is True


def test_download_url_quotes_path() -> None:
    with MiddlewareClient("http://127.0.0.1:8000/api", repo="my app") as client:
        url = client.download_url(V1, "pkg/a b#c%.py")

    assert (
        url
        == "http://127.0.0.1:8000/api/download/v1.0.0/pkg/a%20b%23c%25.py?repo=my+app"
    )


def test_download_url_rejects_unsafe_path() -> None:
    with (
        MiddlewareClient("http://127.0.0.1:8000") as client,
        pytest.raises(ManifestError, match="unsafe manifest path '../x'"),
    ):
        client.download_url(V1, "../x")


# Endpoints against the reference middleware


def test_health_returns_status(served) -> None:
    with MiddlewareClient(served.url, limits=FAST) as client:
        assert client.health()["status"] == "ok"


def test_list_releases_from_middleware(served) -> None:
    with MiddlewareClient(served.url, limits=FAST) as client:
        releases = client.list_releases()

    assert [entry["version"] for entry in releases] == ["1.0.0"]


def test_release_info_of_version(served) -> None:
    with MiddlewareClient(served.url, limits=FAST) as client:
        info = client.release_info(V1)

    assert info["version"] == "1.0.0"


def test_fetch_manifest_returns_object(served) -> None:
    with MiddlewareClient(served.url, limits=FAST) as client:
        manifest = client.fetch_manifest(V1)

    assert manifest["version"] == "1.0.0"
    assert sorted(entry["path"] for entry in manifest["files"]) == [
        "main.py",
        "pkg/a b.py",
    ]


def test_missing_release_names_next_step(served) -> None:
    with (
        MiddlewareClient(served.url, limits=FAST) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        client.fetch_manifest(Version("9.9.9"))

    assert str(caught.value) == (
        f"release 9.9.9 not found on the middleware at {served.url}/; run "
        "`update.py --list` to see the available versions"
    )
    assert caught.value.exit_code == ExitCode.FAILED


def test_missing_release_info_not_found(served) -> None:
    with (
        MiddlewareClient(served.url, limits=FAST) as client,
        pytest.raises(MiddlewareError, match="release 9.9.9 not found"),
    ):
        client.release_info(Version("9.9.9"))


def test_repo_passed_on_every_request(served) -> None:
    with MiddlewareClient(served.url, repo="team/app", limits=FAST) as client:
        client.health()
        client.list_releases()
        client.release_info(V1)
        client.fetch_manifest(V1)

    assert len(served.requests) == 4
    assert {record.query for record in served.requests} == {"repo=team%2Fapp"}


def test_no_repo_sends_no_query(served) -> None:
    with MiddlewareClient(served.url, limits=FAST) as client:
        client.health()

    assert served.requests[0].query == ""


def test_dead_server_message() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with (
        MiddlewareClient(url, limits=FAST) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        client.health()

    assert str(caught.value) == (
        f"cannot reach the middleware at {url}/: connection refused; check that "
        "it is running or pass --middleware-url"
    )
    assert caught.value.__cause__ is not None


def test_dead_server_hides_credentials(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://alice:hunter2@127.0.0.1:{closed_port()}"
    with (
        MiddlewareClient(url, limits=FAST) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        client.list_releases()

    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in caplog.text
    assert "***@127.0.0.1" in str(caught.value)


def test_server_error_retried_then_served(served) -> None:
    served.set_faults(FaultConfig(error_status=503, error_count=2, retry_after=0.01))

    with MiddlewareClient(served.url, limits=FAST) as client:
        manifest = client.fetch_manifest(V1)

    assert manifest["version"] == "1.0.0"
    assert [record.status for record in served.requests] == [503, 503, 200]


def test_rate_limit_retried_with_retry_after(served, caplog) -> None:
    caplog.set_level(logging.INFO, logger="codemate_setup.client")
    served.set_faults(FaultConfig(error_status=429, error_count=1, retry_after=0.05))

    with MiddlewareClient(served.url, limits=FAST) as client:
        assert client.health()["status"] == "ok"

    assert [record.status for record in served.requests] == [429, 200]
    assert "in 0.05 s: HTTP 429" in caplog.text


def test_persistent_server_error_fails(served) -> None:
    served.set_faults(FaultConfig(error_status=500, error_count=100))

    with (
        MiddlewareClient(served.url, limits=FAST) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        client.list_releases()

    assert "HTTP 500 after 3 attempts" in str(caught.value)
    assert len(served.requests) == FAST.max_retries + 1


def test_client_error_not_retried(served) -> None:
    served.set_faults(FaultConfig(error_status=403, error_count=100))

    with (
        MiddlewareClient(served.url, limits=FAST) as client,
        pytest.raises(MiddlewareError, match="returned HTTP 403"),
    ):
        client.health()

    assert len(served.requests) == 1


# Responses only a scripted server produces


def test_manifest_oversize_by_header() -> None:
    limits = Limits(max_manifest_bytes=100)
    with (
        json_server({"version": "1.0.0", "pad": "x" * 200}) as server,
        MiddlewareClient(server.url, limits=limits) as client,
        pytest.raises(ManifestError) as caught,
    ):
        client.fetch_manifest(V1)

    assert "must be at most 100 bytes, but it declares" in str(caught.value)


def test_manifest_oversize_while_streaming() -> None:
    def endless(request: ScriptedRequest) -> ScriptedResponse:
        def chunks() -> Iterator[bytes]:
            yield b'{"version": "1.0.0", "pad": "'
            while True:
                yield b"x" * 65536

        return ScriptedResponse(body=chunks())

    limits = Limits(max_manifest_bytes=1_000_000)
    with (
        ScriptedServer(endless) as server,
        MiddlewareClient(server.url, limits=limits) as client,
        pytest.raises(ManifestError) as caught,
    ):
        client.fetch_manifest(V1)

    assert "must be at most 1000000 bytes, but it sent more" in str(caught.value)
    assert "so the transfer was stopped" in str(caught.value)


def test_manifest_invalid_json() -> None:
    with (
        ScriptedServer(lambda r: ScriptedResponse(body=b"{not json")) as server,
        MiddlewareClient(server.url, limits=FAST) as client,
        pytest.raises(ManifestError) as caught,
    ):
        client.fetch_manifest(V1)

    assert "manifest of release 1.0.0" in str(caught.value)
    assert "is not valid JSON" in str(caught.value)
    assert caught.value.__cause__ is not None


def test_manifest_must_be_object() -> None:
    with (
        json_server(["not", "an", "object"]) as server,
        MiddlewareClient(server.url, limits=FAST) as client,
        pytest.raises(ManifestError, match="must be a JSON object, got list"),
    ):
        client.fetch_manifest(V1)


def test_release_list_must_be_list() -> None:
    with (
        json_server("nope") as server,
        MiddlewareClient(server.url, limits=FAST) as client,
        pytest.raises(MiddlewareError, match="must be a JSON list, got str"),
    ):
        client.list_releases()


def test_release_list_oversize() -> None:
    limits = Limits(max_release_list_bytes=50)
    with (
        json_server([{"version": f"1.0.{n}"} for n in range(20)]) as server,
        MiddlewareClient(server.url, limits=limits) as client,
        pytest.raises(MiddlewareError, match="must be at most 50 bytes"),
    ):
        client.list_releases()


def test_release_list_skips_invalid_versions(caplog) -> None:
    entries = [
        {"version": "v2.0.0", "notes": "kept"},
        {"version": "not a version"},
        {"version": "1.0.0/../x"},
        {"name": "no version"},
        "not an object",
    ]
    with (
        json_server(entries) as server,
        MiddlewareClient(server.url, limits=FAST) as client,
    ):
        releases = client.list_releases()

    assert releases == [{"version": "2.0.0", "notes": "kept"}]
    assert caplog.text.count("ignoring a release entry") == 4


def test_release_list_accepts_wrapped_form() -> None:
    with (
        json_server({"releases": [{"version": "3.0.0"}]}) as server,
        MiddlewareClient(server.url, limits=FAST) as client,
    ):
        assert client.list_releases() == [{"version": "3.0.0"}]


def test_requests_ask_for_identity_encoding() -> None:
    with (
        json_server({"status": "ok"}) as server,
        MiddlewareClient(server.url, limits=FAST) as client,
    ):
        client.health()

    assert server.requests[0].headers["accept-encoding"] == "identity"
    assert server.requests[0].headers["user-agent"].startswith("codemate-setup/")


def test_redirect_to_remote_http_rejected() -> None:
    def redirect(request: ScriptedRequest) -> ScriptedResponse:
        return ScriptedResponse(
            status=302, headers={"Location": "http://mirror.example.com/health"}
        )

    with (
        ScriptedServer(redirect) as server,
        MiddlewareClient(server.url, limits=FAST) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        client.health()

    assert "redirected" in str(caught.value)
    assert "http://mirror.example.com/health, which is not https" in str(caught.value)
    assert len(server.requests) == 1


def test_redirect_on_loopback_followed() -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        if request.path.startswith("/health"):
            return ScriptedResponse(status=302, headers={"Location": "/moved"})
        return ScriptedResponse(body=b'{"status": "ok"}')

    with (
        ScriptedServer(script) as server,
        MiddlewareClient(server.url, limits=FAST) as client,
    ):
        assert client.health() == {"status": "ok"}


def test_dropped_json_body_retried() -> None:
    def script(request: ScriptedRequest) -> ScriptedResponse:
        if request.number == 0:
            return ScriptedResponse(
                headers={"Content-Length": "100"},
                body=[b'{"status": '],
                length=False,
                close=True,
            )
        return ScriptedResponse(body=b'{"status": "ok"}')

    with (
        ScriptedServer(script) as server,
        MiddlewareClient(server.url, limits=FAST) as client,
    ):
        assert client.health() == {"status": "ok"}

    assert len(server.requests) == 2


def test_read_timeout_retried_then_fails() -> None:
    def stall(request: ScriptedRequest) -> ScriptedResponse:
        def chunks() -> Iterator[bytes]:
            yield b'{"status":'
            # Longer than the read timeout.
            time.sleep(1.0)
            yield b'"ok"}'

        return ScriptedResponse(headers={"Content-Length": "15"}, body=chunks())

    limits = Limits(
        read_timeout=0.2, backoff_base=0.01, backoff_max=0.02, max_retries=1
    )
    with (
        ScriptedServer(stall) as server,
        MiddlewareClient(server.url, limits=limits) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        client.health()

    assert "read timed out after 2 attempts" in str(caught.value)
    assert len(server.requests) == 2


# TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to create a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def ok_script(request: ScriptedRequest) -> ScriptedResponse:
    return ScriptedResponse(body=b'{"status": "ok"}')


def test_tls_unknown_certificate_rejected(tls_files, monkeypatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with (
        ScriptedServer(ok_script, tls_files=tls_files) as server,
        MiddlewareClient(server.url, limits=FAST) as client,
        pytest.raises(MiddlewareError) as caught,
    ):
        client.health()

    assert "TLS certificate verification failed" in str(caught.value)
    assert "REQUESTS_CA_BUNDLE" in str(caught.value)


def test_tls_trusts_requests_ca_bundle(tls_files, monkeypatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files[0]))
    with (
        ScriptedServer(ok_script, tls_files=tls_files) as server,
        MiddlewareClient(server.url, limits=FAST) as client,
    ):
        assert client.health() == {"status": "ok"}

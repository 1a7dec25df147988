"""Tests of the removal of credentials from URLs and messages."""

from __future__ import annotations

import pytest

from codemate_setup.redact import is_secret_key, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://bob:hunter2@updates.example.com/x",
            "https://***@updates.example.com/x",
        ),
        ("https://token123@updates.example.com/", "https://***@updates.example.com/"),
        (
            "http://127.0.0.1:8000/download/v1/a.py?token=abc&repo=app",
            "http://127.0.0.1:8000/download/v1/a.py?token=***&repo=app",
        ),
        (
            "https://h/x?X-Amz-Signature=s1&X-Amz-Credential=c1&part=2",
            "https://h/x?X-Amz-Signature=***&X-Amz-Credential=***&part=2",
        ),
        ("https://h/x?api_key=k&password=p", "https://h/x?api_key=***&password=***"),
        ("http://127.0.0.1:8000/health", "http://127.0.0.1:8000/health"),
    ],
    ids=["userinfo", "user-only", "token", "signed", "api-key", "plain"],
)
def test_redact_url_masks_secrets(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_keeps_repo_value() -> None:
    assert "repo=my-app" in redact_url("http://h/releases?repo=my-app&key=x")


def test_redact_text_masks_library_message() -> None:
    message = (
        "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with "
        "url: /download/v1/a.py?token=s3cret&repo=app (Caused by NewConnectionError)"
    )

    redacted = redact_text(message)

    assert "s3cret" not in redacted
    assert "token=***" in redacted
    assert "repo=app" in redacted


def test_redact_text_masks_userinfo_in_text() -> None:
    redacted = redact_text("cannot reach https://alice:pw@h.example/ now")

    assert "pw" not in redacted
    assert "https://***@h.example/" in redacted


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("token", True),
        ("access_token", True),
        ("KEY", True),
        ("x-amz-security-token", True),
        ("repo", False),
        ("monkey", False),
        ("version", False),
    ],
)
def test_is_secret_key_table(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret

"""Signatures of push requests: what verify_signature accepts and refuses."""

from __future__ import annotations

import time
from typing import Any

import pytest

from herald.http import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_problem, verify_signature
from herald.http.signing import sign

SECRET = "s3cret-for-signing"
BODY = b'{"order_id": 7}'
HEADERS = {"ce-id": "e-1", "ce-type": "order.shipped", "ce-source": "shop", "ce-specversion": "1.0",
           "content-type": "application/json", "x-retry-count": "0", "x-message-key": "k"}


def signed(**changes: str) -> dict[str, str]:
    return {**sign(SECRET, HEADERS, BODY), **changes}


def test_a_signed_request_verifies_in_any_header_case() -> None:
    headers = signed()
    assert verify_signature(SECRET, headers, BODY)
    assert verify_signature(SECRET.encode(), {k.upper(): v for k, v in headers.items()}, BODY)
    assert verify_signature(SECRET, list(headers.items()), BODY)
    assert verify_signature(["old-secret", SECRET], headers, BODY)  # rotation


@pytest.mark.parametrize(("headers", "body", "problem"), [
    (lambda: signed(), b'{"order_id": 8}', "does not match"),
    (lambda: signed(**{"ce-type": "order.refunded"}), BODY, "does not match"),
    (lambda: signed(**{"ce-subject": "added"}), BODY, "does not match"),
    (lambda: {k: v for k, v in signed().items() if k != "ce-source"}, BODY, "does not match"),
    (lambda: signed(**{"x-message-key": "other"}), BODY, "does not match"),
    (lambda: signed(**{"x-retry-count": "3"}), BODY, "does not match"),
    (lambda: signed(**{TIMESTAMP_HEADER: str(int(time.time()) + 1)}), BODY, "does not match"),
    (lambda: signed(**{SIGNATURE_HEADER: "v1=" + "0" * 64}), BODY, "does not match"),
    (lambda: signed(**{SIGNATURE_HEADER: "v2=abc"}), BODY, "no v1="),
    (lambda: signed(**{SIGNATURE_HEADER: "v1=ü"}), BODY, "does not match"),
    (lambda: signed(**{TIMESTAMP_HEADER: "yesterday"}), BODY, "not a unix time"),
    (lambda: signed(**{TIMESTAMP_HEADER: "٣"}), BODY, "not a unix time"),
    (lambda: {k: v for k, v in signed().items() if k != SIGNATURE_HEADER}, BODY, "exactly one"),
    (lambda: {k: v for k, v in signed().items() if k != TIMESTAMP_HEADER}, BODY, "exactly one"),
    (lambda: [*signed().items(), ("ce-id", "e-2")], BODY, "repeated"),
    (lambda: [*signed().items(), (SIGNATURE_HEADER, "v1=00")], BODY, "exactly one"),
])
def test_forged_or_changed_requests_fail(headers: Any, body: bytes, problem: str) -> None:
    found = signature_problem(SECRET, headers(), body)
    assert found is not None and problem in found
    assert not verify_signature(SECRET, headers(), body)


def test_wrong_secret_and_old_requests_fail() -> None:
    assert not verify_signature("another-secret", signed(), BODY)
    old = sign(SECRET, HEADERS, BODY, now=time.time() - 301)
    problem = signature_problem(SECRET, old, BODY)
    assert problem is not None and "old" in problem
    assert verify_signature(SECRET, old, BODY, tolerance=600)
    future = sign(SECRET, HEADERS, BODY, now=time.time() + 3600)
    assert not verify_signature(SECRET, future, BODY)


@pytest.mark.parametrize(("secret", "headers", "body"), [
    ("", signed(), BODY),
    ([], signed(), BODY),
    (SECRET, None, BODY),
    (SECRET, 42, BODY),
    (SECRET, ["not pairs"], BODY),
    (SECRET, signed(), "a str body"),
    (SECRET, {}, b""),
])
def test_garbage_never_raises_and_never_verifies(secret: Any, headers: Any, body: Any) -> None:
    assert verify_signature(secret, headers, body) is False

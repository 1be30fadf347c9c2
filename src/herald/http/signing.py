"""HMAC-SHA256 signatures of push requests, and their check for receivers.

The sender adds `x-herald-timestamp` (unix seconds) and
`x-herald-signature: v1=<hex>`. The signature covers the body and every
header that carries meaning: all `ce-*` headers, `content-type`,
`x-message-key`, `x-retry-count`, `x-herald-attempt`, `x-herald-topic` and
the timestamp. So a forger can change none of them, nor add or remove a
`ce-*` header, and an old request replayed after `tolerance` seconds fails.
Within the window a receiver drops repeats by the event id (`ce-id`), which
it must do anyway: delivery is at least once.

Signed text: `herald-v1\n`, then `name:value\n` for each signed header in
name order (names lower-case, values trimmed), then `\n`, then the body.

This module imports only the standard library: a receiver can use it alone.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping, Sequence

SIGNATURE_HEADER = "x-herald-signature"
TIMESTAMP_HEADER = "x-herald-timestamp"
SIGNED_HEADERS = frozenset({
    "content-type", "x-message-key", "x-retry-count", "x-herald-attempt", "x-herald-topic",
    TIMESTAMP_HEADER,
})
DEFAULT_TOLERANCE = 300.0
Secret = str | bytes


def _is_signed(name: str) -> bool:
    return name.startswith("ce-") or name in SIGNED_HEADERS


def _pairs(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        items = headers.items()
        # Starlette's Headers (and others) have every value of a repeated header in items()
        multi = getattr(headers, "multi_items", None)
        if callable(multi):
            items = multi()
        return [(str(k).lower(), str(v)) for k, v in items]
    return [(str(k).lower(), str(v)) for k, v in headers]


def signed_text(headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes) -> bytes:
    """What the signature covers. Raises ValueError on a repeated signed header."""
    signed: dict[str, str] = {}
    for name, value in _pairs(headers):
        if _is_signed(name):
            if name in signed:
                raise ValueError(f"header {name} is repeated")
            signed[name] = value.strip()
    lines = "".join(f"{name}:{signed[name]}\n" for name in sorted(signed))
    return b"herald-v1\n" + lines.encode("utf-8", "surrogateescape") + b"\n" + body


def _key(secret: Secret) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def sign(secret: Secret, headers: Mapping[str, str], body: bytes, now: float | None = None) -> dict[str, str]:
    """`headers` plus the timestamp and signature headers (a new dict)."""
    out = {k.lower(): v for k, v in headers.items()}
    out[TIMESTAMP_HEADER] = str(int(time.time() if now is None else now))
    digest = hmac.new(_key(secret), signed_text(out, body), hashlib.sha256).hexdigest()
    out[SIGNATURE_HEADER] = f"v1={digest}"
    return out


def signature_problem(
    secret: Secret | Sequence[Secret],
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> str | None:
    """Why the request's signature does not hold, or None when it does.

    `secret` may be a list (during a rotation: old and new). Never raises.
    """
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not secrets or any(not s for s in secrets):
        return "no secret to check against"
    try:
        pairs = _pairs(headers)
    except (TypeError, ValueError):
        return "headers must be a mapping or (name, value) pairs"
    stamps = [v for k, v in pairs if k == TIMESTAMP_HEADER]
    given = [v for k, v in pairs if k == SIGNATURE_HEADER]
    if len(stamps) != 1 or len(given) != 1:
        return f"need exactly one {TIMESTAMP_HEADER} and one {SIGNATURE_HEADER} header"
    stamp = stamps[0].strip()
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return f"{TIMESTAMP_HEADER} is not a unix time in seconds"
    age = (time.time() if now is None else now) - int(stamp)
    if abs(age) > tolerance:
        return f"the request is {age:.0f} s old; at most {tolerance:.0f} s is accepted (replayed?)"
    try:
        text = signed_text(pairs, body)
    except ValueError as exc:
        return str(exc)
    except TypeError:
        return "the body must be bytes"
    candidates = [
        part.strip()[3:] for part in given[0].split(",") if part.strip().startswith("v1=")
    ]
    if not candidates:
        return f"{SIGNATURE_HEADER} holds no v1= signature"
    ok = False
    for key in secrets:
        expected = hmac.new(_key(key), text, hashlib.sha256).hexdigest()
        for candidate in candidates:
            ok |= hmac.compare_digest(expected, candidate.encode("ascii", "replace").decode())
    return None if ok else "the signature does not match (wrong secret, or the request was changed)"


def verify_signature(
    secret: Secret | Sequence[Secret],
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when a push request is signed with `secret` (or one of several) and
    is at most `tolerance` seconds old. `headers` as the receiver got them (any
    case), `body` the raw bytes. Never raises."""
    return signature_problem(secret, headers, body, tolerance=tolerance, now=now) is None

"""Checks of what a request names in its path and query: topics, keys,
streams, numbers. Each raises an HttpError(400) that says what is allowed.

Topic names follow Kafka's rule, the strictest of our brokers: 1 to 249
ASCII letters, digits, `.`, `_` and `-`, and not `.` or `..`. A name that
would work on SQLite but not on Kafka is refused here, so an HTTP client
never depends on the broker behind the gateway.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping

from herald.http.errors import bad_request

MAX_TOPIC = 249
MAX_KEY = 1024
MAX_STREAM = 1024
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def check_topic(topic: str, reserved_prefixes: Iterable[str] = ()) -> str:
    """A topic a client may name; `reserved_prefixes` (retry and dead-letter
    prefixes) are refused, so nobody publishes into herald's own topics."""
    if not topic:
        raise bad_request("the topic is empty", "bad-topic")
    if len(topic) > MAX_TOPIC:
        raise bad_request(f"the topic is {len(topic)} characters long; at most {MAX_TOPIC}", "bad-topic")
    if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise bad_request(
            f"bad topic {_show(topic)}: use ASCII letters, digits, '.', '_' and '-' only", "bad-topic"
        )
    for prefix in reserved_prefixes:
        if topic.startswith(prefix):
            raise bad_request(
                f"topic {topic!r} starts with {prefix!r}, herald's prefix for retry stages or "
                "dead letters; publish to the original topic (dead letters are replayed "
                "through /deadletters)",
                "bad-topic",
            )
    return topic


def check_text(value: str, what: str, limit: int, error: str = "bad-request") -> str:
    """Free text (a key, a stream name): not empty, not too long, no control characters."""
    if not value:
        raise bad_request(f"the {what} is empty", error)
    if len(value) > limit:
        raise bad_request(f"the {what} is {len(value)} characters long; at most {limit}", error)
    if has_control(value):
        raise bad_request(f"the {what} {_show(value)} holds control characters", error)
    return value


def has_control(value: str) -> bool:
    """True when `value` holds a control, format or unassigned-surrogate character."""
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in value)


def int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not low <= int(raw) <= high:
        raise bad_request(
            f"query parameter {name}={_show(raw)} must be a whole number from {low} to {high}",
            "bad-query",
        )
    return int(raw)


def optional_int(query: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    if name not in query:
        return None
    return int_param(query, name, low, low, high)


def float_param(query: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw) if raw.isascii() and len(raw) <= 32 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        raise bad_request(
            f"query parameter {name}={_show(raw)} must be a number from {low:g} to {high:g}",
            "bad-query",
        )
    return value


def bool_param(query: Mapping[str, str], name: str) -> bool:
    raw = query.get(name)
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in ("", "1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise bad_request(f"query parameter {name}={_show(raw)} must be true or false", "bad-query")


def _show(value: str) -> str:
    """A value for an error message: quoted, escaped, and cut at 80 characters."""
    shown = repr(value[:80])
    return shown if len(value) <= 80 else shown + "..."


def query_of(items: Iterable[tuple[str, str]], allowed: Iterable[str]) -> dict[str, str]:
    """The query parameters, each at most once and each one the endpoint knows."""
    known = set(allowed)
    out: dict[str, str] = {}
    for name, value in items:
        if name not in known:
            expected = ", ".join(sorted(known)) or "none"
            raise bad_request(f"unknown query parameter {_show(name)}; this endpoint takes: {expected}",
                              "bad-query")
        if name in out:
            raise bad_request(f"query parameter {_show(name)} is given twice", "bad-query")
        out[name] = value
    return out

"""What the NATS adapter puts on the wire: names, headers, ack subjects, API calls.

Kept apart from the broker and the consumer-group code so each stays short,
and so the naming rules (which a plain NATS client needs to follow to talk
to herald) live in one place.

Names. A herald topic becomes one JetStream stream named
`encode_name(namespace + topic)`, with one subject per partition,
`<stream>.<partition>`. Stream names, consumer names and subject tokens
cannot hold `.`, `*`, `>` or white space, so every character outside
`[A-Za-z0-9_-]` is written as `%XX` per UTF-8 byte (`todo.events` ->
`todo%2Eevents`); common topic names stay as they are. The encoding never
produces `~`, so names with `~` (the delay stream, group consumers) can
never clash with a topic's stream.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError

_PLAIN_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_HEX = frozenset("0123456789ABCDEF")


def encode_name(text: str, escape: str = "%") -> str:
    """`text` as a NATS name or subject token; `decode_name` reverses it."""
    out: list[str] = []
    for ch in text:
        if ch in _PLAIN_NAME:
            out.append(ch)
        else:
            out.extend(f"{escape}{b:02X}" for b in ch.encode())
    return "".join(out)


def decode_name(name: str, escape: str = "%") -> str | None:
    """The text `encode_name` made `name` from; None when `name` is not such an encoding."""
    raw = bytearray()
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == escape:
            pair = name[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                return None
            raw.append(int(pair, 16))
            i += 3
        elif ch in _PLAIN_NAME:
            raw.append(ord(ch))
            i += 1
        else:
            return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def bucket_name(namespace: str) -> str:
    """The KV bucket of a namespace's group members and leases (names allow only
    `[A-Za-z0-9_-]`; an unusual namespace is hashed, never shortened into another's)."""
    if not namespace:
        return "herald-groups"
    if re.fullmatch(r"[A-Za-z0-9-]+", namespace):
        return f"herald-groups-{namespace}"
    import hashlib

    return f"herald-groups_{hashlib.sha1(namespace.encode()).hexdigest()[:16]}"


TOPIC_MARK = "herald topic "  # description of a topic's stream: the mark, then JSON


def topic_description(namespace: str, topic: str, partitions: int) -> str:
    return TOPIC_MARK + json.dumps(
        {"namespace": namespace, "topic": topic, "partitions": partitions}, ensure_ascii=True
    )


def parse_topic_description(description: str | None) -> dict[str, Any] | None:
    if not description or not description.startswith(TOPIC_MARK):
        return None
    try:
        meta = json.loads(description[len(TOPIC_MARK):])
    except ValueError:
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("partitions"), int):
        return None
    return meta


def generation_of(consumer_info: dict[str, Any]) -> int:
    """The generation herald wrote into a group consumer's description (0 if none)."""
    try:
        return int(json.loads(consumer_info["config"].get("description") or "{}")["generation"])
    except (ValueError, KeyError, TypeError):
        return 0


# -- headers -----------------------------------------------------------------
KEY_HEADER = "ce_partitionkey"  # CloudEvents' partitioning extension carries the key
PACKED_HEADER = "herald-packed"  # headers NATS cannot carry as they are (see below)
DUE_HEADER = "herald-deliver-at"  # on the delay stream: unix seconds when due
MSG_ID_HEADER = "Nats-Msg-Id"  # JetStream drops a repeated id: publish retries store once

# NATS header names are RFC 7230 tokens (nats-py refuses anything else) and
# values are one line, trimmed. A header that does not fit (a name like
# `x-名前`, a value with a line break or edge spaces, an error message with a
# traceback) travels inside one `herald-packed` header as base64url JSON, so
# every header comes back exactly as it was published; the rest stay plain
# for other NATS clients to read.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _plain(name: str, value: str) -> bool:
    return (
        _TOKEN.fullmatch(name) is not None
        and not name.startswith("Nats-")
        and name not in (PACKED_HEADER, "Status", "Description")
        and value == value.strip()
        and value.isprintable()
    )


def to_wire_headers(headers: Mapping[str, str], key: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    packed: dict[str, str] = {}
    items = list(headers.items())
    if key is not None:
        items.append((KEY_HEADER, key))
    for name, value in items:
        if _plain(name, value):
            out[name] = value
        else:
            packed[name] = value
    if packed:
        raw = json.dumps(packed, ensure_ascii=False, separators=(",", ":")).encode()
        out[PACKED_HEADER] = base64.urlsafe_b64encode(raw).decode()
    return out


def from_wire_headers(raw: Mapping[str, str] | None) -> tuple[dict[str, str], str | None]:
    """(headers, key) of a received message; NATS' own `Nats-*` headers are left out."""
    if not raw:
        return {}, None
    headers = {k: v for k, v in raw.items() if not k.startswith("Nats-")}
    packed = headers.pop(PACKED_HEADER, None)
    if packed:
        try:
            extra = json.loads(base64.urlsafe_b64decode(packed.encode()))
        except ValueError:
            extra = None
        if isinstance(extra, dict):
            headers.update({str(k): str(v) for k, v in extra.items()})
        else:  # not ours after all: keep it visible rather than drop it
            headers[PACKED_HEADER] = packed
    key = headers.pop(KEY_HEADER, None)
    return headers, key


def wire_size(subject: str, body: bytes, headers: Mapping[str, str]) -> int:
    """Bytes the server counts against max_payload (headers and body)."""
    return len(body) + 12 + sum(len(k) + len(v.encode()) + 4 for k, v in headers.items())


# -- ack subjects --------------------------------------------------------------
def parse_ack_subject(reply: str) -> tuple[int, int, int, int]:
    """(times delivered, stream sequence, consumer sequence, stored at in ns) of a
    JetStream message, from its reply subject:
    `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ns>.<pending>`, or the
    newer form with domain and account hash before the stream."""
    tokens = reply.split(".")
    first = 4 if len(tokens) == 9 else 6
    return int(tokens[first]), int(tokens[first + 1]), int(tokens[first + 2]), int(tokens[first + 3])


# -- JetStream API -------------------------------------------------------------
STREAM_NOT_FOUND = 10059
CONSUMER_NOT_FOUND = 10014
STREAM_NAME_IN_USE = 10058
NO_MESSAGE_FOUND = (10037, 10057)  # message get, message delete


class JetStreamError(Exception):
    """An error answer of the JetStream API."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} (JetStream error {err_code}, status {code})")
        self.code = code
        self.err_code = err_code
        self.description = description


class JetStreamUnreachable(Exception):
    """No answer: the server is down or reconnecting, or JetStream is off."""


async def api(nc: NatsClient, subject: str, request: Mapping[str, Any] | None, timeout: float) -> Any:
    """One JetStream API call (`$JS.API.<subject>`); returns the decoded answer."""
    payload = json.dumps(request).encode() if request is not None else b""
    try:
        msg = await nc.request(f"$JS.API.{subject}", payload, timeout=timeout)
    except NoRespondersError as exc:
        raise JetStreamUnreachable(f"no JetStream answered {subject}: is JetStream enabled?") from exc
    except (NatsError, TimeoutError, OSError) as exc:  # timeout, or the connection is down
        raise JetStreamUnreachable(f"JetStream did not answer {subject}: {exc!r}") from exc
    answer = json.loads(msg.data)
    error = answer.get("error") if isinstance(answer, dict) else None
    if error:
        raise JetStreamError(
            int(error.get("code", 0)), int(error.get("err_code", 0)), str(error.get("description", ""))
        )
    return answer

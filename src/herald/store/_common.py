"""Helpers both event stores share: argument checks, the expected-version
rules, the idempotent-retry rule, the row codec, the subscribe loop, and the
guard against an append that would wait for the caller's own transaction.
Each backend keeps its SQL; what is the same in both lives here once."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import UNSET, UnsetType

from herald.errors import ConfigError, DecodeError
from herald.event import SPECVERSION, Envelope
from herald.store.base import (
    ConcurrencyError,
    CorruptEvent,
    Expected,
    ExpectedVersion,
    StoredEvent,
    StoreError,
    StoreStats,
)

if TYPE_CHECKING:
    from herald.brokers._log import DataSignal
    from herald.store.base import EventStore

encode = msgspec.msgpack.Encoder().encode
decode_map = msgspec.msgpack.Decoder(dict[str, str]).decode
_NO_METADATA = encode({})  # most events carry none: no decoder call for them
# The columns of herald_events in the order `stored_event` takes them.
COLUMNS = "stream, version, position, attributes, data, metadata, recorded_at"


class _Attributes(
    msgspec.Struct,
    forbid_unknown_fields=True,
    rename={
        "id": "ce_id", "source": "ce_source", "type": "ce_type", "specversion": "ce_specversion",
        "time": "ce_time", "subject": "ce_subject", "datacontenttype": "content-type",
        "dataversion": "ce_dataversion", "correlationid": "ce_correlationid",
        "causationid": "ce_causationid", "traceparent": "ce_traceparent",
        "aggregatetype": "ce_aggregatetype",
    },
):
    """A stored row's attributes as herald writes them (no extension, no user
    header), decoded in one step; anything else takes Envelope.from_headers."""

    # UNSET, not None, for an absent header: a nil value is not a string,
    # and must fail here as it fails in from_headers
    id: str
    source: str
    type: str
    specversion: str | UnsetType = UNSET
    time: str | UnsetType = UNSET
    subject: str | UnsetType = UNSET
    datacontenttype: str | UnsetType = UNSET
    dataversion: str | UnsetType = UNSET
    correlationid: str | UnsetType = UNSET
    causationid: str | UnsetType = UNSET
    traceparent: str | UnsetType = UNSET
    aggregatetype: str | UnsetType = UNSET


_decode_attributes = msgspec.msgpack.Decoder(_Attributes).decode
# The dataversions the fast path knows, each as from_headers reads it.
_VERSIONS = {str(n): n for n in range(1, 1000)}


def _fast_envelope(attributes: bytes, data: bytes) -> Envelope | None:
    """Envelope.from_headers(decode_map(attributes), data) at a third of the
    cost (reads are mostly this), or None where only from_headers may decide:
    extensions, user headers, odd values, errors."""
    try:
        a = _decode_attributes(attributes)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    version = a.dataversion
    if not (a.id and a.source and a.type) or a.specversion not in (UNSET, SPECVERSION) or (
        version is not UNSET and version not in _VERSIONS
    ):
        return None
    # UNSET -> None spelled out per field: a helper call each costs a tenth of the read
    return Envelope(
        id=a.id, source=a.source, type=a.type, data=data, specversion=SPECVERSION,
        time=None if a.time is UNSET else a.time,
        subject=None if a.subject is UNSET else a.subject,
        datacontenttype=None if a.datacontenttype is UNSET else a.datacontenttype,
        dataversion=None if version is UNSET else _VERSIONS[version],
        correlationid=None if a.correlationid is UNSET else a.correlationid,
        causationid=None if a.causationid is UNSET else a.causationid,
        traceparent=None if a.traceparent is UNSET else a.traceparent,
        aggregatetype=None if a.aggregatetype is UNSET else a.aggregatetype,
    )


def _fast_path_agrees() -> bool:
    """Checked once at import: with every attribute set, the fast path must
    give what from_headers gives, or it stays off (event.py changed)."""
    probe = Envelope(
        id="i", source="s", type="t", data=b"{}", time="2024-01-01T00:00:00.000000Z", subject="u",
        datacontenttype="application/json", dataversion=2, correlationid="c", causationid="k",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", aggregatetype="a",
    )
    try:
        for envelope in (probe, Envelope(id="i", source="s", type="t")):
            headers = envelope.to_headers()
            if _fast_envelope(encode(headers), envelope.data) != Envelope.from_headers(
                headers, envelope.data
            ):
                return False
    except Exception:  # any surprise: keep the slow, certain path
        return False
    return True


_FAST = _fast_path_agrees()


def check_stream(stream: str) -> None:
    if not isinstance(stream, str) or not stream:
        raise ConfigError(f"stream must be a non-empty string, got {stream!r}")


def check_append(stream: str, events: Sequence[Envelope], expected: Expected) -> None:
    """Raise ConfigError for arguments no store could accept."""
    check_stream(stream)
    if isinstance(events, (str, bytes, Envelope)) or not isinstance(events, Sequence):
        raise ConfigError(f"append takes a list of Envelopes, got {type(events).__name__}")
    if not events:
        raise ConfigError("append needs at least one event")
    if isinstance(expected, bool) or (
        not isinstance(expected, ExpectedVersion) and (not isinstance(expected, int) or expected < 0)
    ):
        raise ConfigError(
            f"expected must be an ExpectedVersion or a version >= 0, got {expected!r}"
        )
    for event in events:
        if not isinstance(event, Envelope):
            raise ConfigError(
                f"append takes Envelopes (app.envelope(event)), got {type(event).__name__}"
            )
    if len({e.id for e in events}) != len(events):
        raise ConfigError(f"append to {stream!r} holds the same event id twice")


def check_append_args(
    stream: str, events: Sequence[Envelope], expected: Expected, metadata: Mapping[str, str] | None
) -> dict[str, str]:
    """`append`'s arguments checked (check_append, check_metadata); the
    metadata to record."""
    check_append(stream, events, expected)
    return check_metadata(metadata)


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ConfigError(f"metadata must map str to str, got {metadata!r}")
    return dict(metadata)


def check_read(name: str, value: object, minimum: int) -> int:
    """A positional/limit argument: an int (not bool) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def check_read_stream(stream: str, from_version: int | None, limit: int | None, backwards: bool) -> int:
    """`read_stream`'s arguments checked; the version it reads from (default:
    the first, or `backwards` the last)."""
    check_stream(stream)
    if from_version is not None:
        check_read("from_version", from_version, 0)
    if limit is not None:
        check_read("limit", limit, 0)
    if from_version is not None:
        return from_version
    return 2**62 if backwards else 1


def check_types(types: Sequence[str], since: datetime | None, limit: int) -> None:
    """`read_by_type`'s arguments."""
    if isinstance(types, str) or not all(isinstance(t, str) and t for t in types):
        raise ConfigError(f"types must be a list of event type names, got {types!r}")
    if since is not None and not isinstance(since, datetime):
        raise ConfigError(f"since must be a datetime, got {since!r}")
    check_read("limit", limit, 0)


def check_streams(prefix: str, limit: int) -> None:
    """`streams`' arguments."""
    if not isinstance(prefix, str):
        raise ConfigError(f"prefix must be a string, got {prefix!r}")
    check_read("limit", limit, 0)


def expected_holds(expected: Expected, current: int) -> bool:
    if expected == ExpectedVersion.ANY:
        return True
    if expected == ExpectedVersion.NO_STREAM:
        return current == 0
    if expected == ExpectedVersion.STREAM_EXISTS:
        return current > 0
    return current == int(expected)


def idempotent(
    stream: str, ids: list[str], recorded: dict[str, int], expected: Expected, current: int
) -> int:
    """A retried append of events already recorded at the same versions is a
    no-op returning `current`; any other overlap of ids is a conflict.
    `recorded` maps ids to their version in `stream` (0: in another stream)."""
    start = recorded.get(ids[0], 0)
    same_place = start >= 1 and all(recorded.get(i) == start + n for n, i in enumerate(ids))
    if same_place and (isinstance(expected, ExpectedVersion) or expected == start - 1):
        return current
    raise ConcurrencyError(stream, expected, current)


def stored_event(
    stream: str,
    version: int,
    position: int,
    attributes: bytes,
    data: bytes,
    metadata: bytes,
    recorded_at: datetime,
) -> StoredEvent:
    """Decode one row; a row that does not decode is CorruptEvent naming its position."""
    try:
        data = bytes(data)
        envelope = (_fast_envelope(attributes, data) if _FAST else None) or Envelope.from_headers(
            decode_map(attributes), data
        )
        meta = {} if metadata == _NO_METADATA else decode_map(metadata)
    except (DecodeError, msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
        raise CorruptEvent(
            f"stored event at position {position} (stream {stream!r}, version {version}) "
            f"cannot be read: {exc}; repair or delete that row"
        ) from exc
    return StoredEvent(stream, version, position, envelope, recorded_at, meta)


def utc(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def store_stats(streams: int, types: Iterable[Sequence[Any]], last: int) -> StoreStats:
    """`stats` from the backend's counts: streams, (type, events) rows most
    frequent first, the last position."""
    counts = {t: int(n) for t, n in types}
    return StoreStats(int(streams), sum(counts.values()), int(last), counts)


async def follow(
    store: EventStore,
    after: int,
    signal: DataSignal,
    poll_interval: float,
    *,
    ready: Callable[[], Awaitable[None]] | None = None,
    idle: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[StoredEvent]:
    """`subscribe`: catch up from `after` with `read_all`, then, whenever a
    read finds nothing new, wait for `signal` (an append in this process) or
    `poll_interval` (one elsewhere). `ready` runs once before the first read,
    `idle` before each wait."""
    check_read("after", after, 0)
    if ready is not None:
        await ready()
    position = after
    while True:
        seen = signal.version
        batch = await store.read_all(position, 500)
        for event in batch:
            position = event.position
            yield event
        if not batch:
            if idle is not None:
                await idle()
            await signal.wait(seen, poll_interval)


# (store, task) pairs whose transaction() block is open: a plain store.append
# from that same task would wait for its own transaction (a deadlock). Tasks
# started inside the block inherit the variable but are other tasks: they
# may append, and simply wait for the commit.
_open: contextvars.ContextVar[frozenset[tuple[int, int]]] = contextvars.ContextVar(
    "herald_store_transactions", default=frozenset()
)


def _key(store: object) -> tuple[int, int]:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return id(store), id(task)


@contextlib.contextmanager
def inside_transaction(store: object) -> Iterator[None]:
    token = _open.set(_open.get() | {_key(store)})
    try:
        yield
    finally:
        _open.reset(token)


def refuse_nested_append(store: object) -> None:
    opened = _open.get()
    if opened and _key(store) in opened:
        raise StoreError(
            "store.append() inside `async with store.transaction() as tx` would wait for "
            "that transaction to end: use tx.append() instead"
        )

"""Events and their CloudEvents 1.0 envelope.

`Event` is the base of typed domain events (msgspec structs: fast to encode and
validate). `Envelope` holds the CloudEvents attributes and the encoded `data`;
on the wire the attributes travel as `ce_*` headers beside the data (binary
mode), so tools that speak CloudEvents read our messages and we read theirs.
"""

from __future__ import annotations

import os
import time as _time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from herald.errors import ConfigError, DecodeError

SPECVERSION = "1.0"

# CloudEvents attribute -> header name (Kafka / AMQP binary content mode).
_ATTRIBUTE_HEADERS: dict[str, str] = {
    "id": "ce_id",
    "source": "ce_source",
    "type": "ce_type",
    "specversion": "ce_specversion",
    "time": "ce_time",
    "subject": "ce_subject",
    "dataversion": "ce_dataversion",
    "correlationid": "ce_correlationid",
    "causationid": "ce_causationid",
    "traceparent": "ce_traceparent",
    "aggregatetype": "ce_aggregatetype",
}
CONTENT_TYPE_HEADER = "content-type"
_CE_PREFIX = "ce_"


if TYPE_CHECKING:
    _StructMeta = msgspec.StructMeta
else:
    _StructMeta = type(msgspec.Struct)  # msgspec.StructMeta is public from 0.20 on


class _EventMeta(_StructMeta):
    """Lets an event say its CloudEvents type and version in the class line.

    A metaclass because msgspec structs reject unknown class keywords; a plain
    `__init_subclass__` never sees them.
    """

    def __new__(
        mcls,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        type: str | None = None,
        version: int | None = None,
        subject: str | None = None,
        aggregate: str | None = None,
        **struct_options: Any,
    ) -> Any:
        # msgspec does not inherit kw_only; events are keyword-only all the way down,
        # so a field added or moved in a new version cannot shift positional arguments.
        struct_options.setdefault("kw_only", True)
        cls: Any = super().__new__(mcls, name, bases, namespace, **struct_options)
        if not namespace.get("__module__", "").startswith("herald.") or name != "Event":
            if version is not None and (not isinstance(version, int) or version < 1):
                raise ConfigError(f"{name}: version must be an integer >= 1, got {version!r}")
            cls.__event_type__ = type or namespace.get("__event_type__") or name
            cls.__event_version__ = version or 1
            cls.__subject_field__ = subject
            cls.__aggregate_type__ = aggregate
            if subject is not None and subject not in cls.__struct_fields__:
                raise ConfigError(f"{name}: subject={subject!r} is not a field of the event")
            registry.register(cls)
        return cls


class Event(msgspec.Struct, metaclass=_EventMeta, kw_only=True):
    """Base class of typed events.

    ```python
    class TodoCompleted(Event, type="todo.completed", version=1, subject="todo_id"):
        todo_id: int
        title: str
    ```

    `type` is the CloudEvents type (default: the class name), `version` the
    schema version carried as `dataversion`, `subject` names the field that
    holds the aggregate id. Fields are validated on decode.
    """

    __event_type__: ClassVar[str] = "Event"
    __event_version__: ClassVar[int] = 1
    __subject_field__: ClassVar[str | None] = None
    __aggregate_type__: ClassVar[str | None] = None

    if TYPE_CHECKING:  # what type checkers see of the class keywords _EventMeta takes

        def __init_subclass__(
            cls,
            *,
            type: str | None = None,
            version: int | None = None,
            subject: str | None = None,
            aggregate: str | None = None,
            **struct_options: Any,
        ) -> None: ...

    def event_subject(self) -> str | None:
        """The aggregate id taken from the field named by `subject=`, if any."""
        field = self.__subject_field__
        return None if field is None else str(getattr(self, field))


class EventRegistry:
    """Every event class of this process, by CloudEvents type. Last definition wins."""

    def __init__(self) -> None:
        self._by_type: dict[str, type[Any]] = {}

    def register(self, cls: type[Any], type_name: str | None = None) -> None:
        name = type_name or getattr(cls, "__event_type__", None) or cls.__name__
        self._by_type[name] = cls

    def get(self, type_name: str) -> type[Any] | None:
        return self._by_type.get(type_name)

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._by_type

    def types(self) -> list[str]:
        return sorted(self._by_type)


registry = EventRegistry()


def type_name_of(cls: type[Any]) -> str:
    """The CloudEvents type of an event class (Event subclass or Protobuf message)."""
    name = getattr(cls, "__event_type__", None)
    if name:
        return str(name)
    descriptor = getattr(cls, "DESCRIPTOR", None)
    if descriptor is not None:
        return str(descriptor.full_name)
    return cls.__name__


def version_of(cls: type[Any]) -> int:
    return int(getattr(cls, "__event_version__", 1))


_ids: Iterator[str] = iter(())  # ready-made ids; next() on it is atomic


def _forget_ids() -> None:
    global _ids
    _ids = iter(())  # a forked child must not hand out its parent's ids


os.register_at_fork(after_in_child=_forget_ids)

# Per id: the version nibble 4 (byte 6) and the variant bits 10 (byte 8), RFC 4122.
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT_RFC = bytes((b & 0x3F) | 0x80 for b in range(256))
# Where each of an id's 32 hex digits goes in "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx ".
_DIGIT_AT = [i + (i >= 8) + (i >= 12) + (i >= 16) + (i >= 20) for i in range(32)]
_POOL_IDS = 256


def _id_pool() -> Iterator[str]:
    """_POOL_IDS ids from one os.urandom call, formatted in C: 32 strided slice
    copies for the whole pool instead of five slices and a format per id."""
    raw = bytearray(os.urandom(16 * _POOL_IDS))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT_RFC)
    digits = raw.hex().encode()
    text = bytearray(b"-" * (37 * _POOL_IDS))
    text[36::37] = b" " * _POOL_IDS
    for digit, at in enumerate(_DIGIT_AT):
        text[at::37] = digits[digit::32]
    return iter(text.decode().split())


def new_event_id() -> str:
    """A version 7 UUID (RFC 9562): the unix time in milliseconds, a 12-bit
    counter within the millisecond, then 62 random bits. Ids of one process
    grow in the order they are made, which keeps the id indexes of the event
    store, the outbox and the dedup tables growing at their end (random ids
    touch a different index page per insert: an append of ten events wrote
    ten). The random part comes from a pool of UUID4s made 256 at a time
    from one os.urandom call. Safe across threads: two threads may share a
    counter value, never the random bits."""
    global _ids, _clock
    random_id = next(_ids, None)
    if random_id is None:
        pool = _id_pool()
        random_id = next(pool)
        _ids = pool
    millis = _time_ns() // 1_000_000
    clock = _clock
    if millis > clock[0]:  # a new millisecond: the counter starts at a random point in its lower half
        digits = f"{millis & 0xFFFFFFFFFFFF:012x}"
        clock = _clock = [millis, int(random_id[15:18], 16) & 0x7FF, f"{digits[:8]}-{digits[8:]}-7"]
    else:  # the same one (or the clock stepped back): count on
        clock[1] += 1
        if clock[1] > 0xFFF:  # 4,096 ids in one millisecond: borrow the next
            millis = clock[0] + 1
            digits = f"{millis & 0xFFFFFFFFFFFF:012x}"
            clock = _clock = [millis, 0, f"{digits[:8]}-{digits[8:]}-7"]
    # random_id is "xxxxxxxx-xxxx-4xxx-vxxx-xxxxxxxxxxxx": its variant and random digits stay
    prefix: str = clock[2]
    counter: int = clock[1]
    return prefix + _COUNTER_DIGITS[counter & 0xFFF] + random_id[18:]


# [unix millisecond, counter, "tttttttt-tttt-7"]
_clock: list[Any] = [-1, 0, ""]
_COUNTER_DIGITS = [f"{n:03x}" for n in range(4096)]
_time_ns = _time.time_ns


_second: list[Any] = [-1, ""]  # [unix second, its "YYYY-MM-DDTHH:MM:SS"]


def utc_now_iso() -> str:
    """Now in RFC 3339 UTC with microseconds (`2024-05-01T12:00:00.123456Z`);
    the date and time of day are formatted once per second."""
    now = _time.time()
    second = int(now)
    cached = _second
    if second != cached[0]:
        cached[1] = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(second))
        cached[0] = second
    return f"{cached[1]}.{int((now - second) * 1e6):06d}Z"


class Envelope(msgspec.Struct, kw_only=True, gc=False, frozen=True):
    """A CloudEvents 1.0 event: attributes plus the encoded `data`. Immutable:
    an in-process broker hands the same envelope to every consumer.

    Extensions beyond the ones herald knows stay in `extensions` and travel
    unchanged.
    """

    id: str
    source: str
    type: str
    data: bytes = b""
    specversion: str = SPECVERSION
    time: str | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    dataversion: int | None = None
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None
    aggregatetype: str | None = None
    extensions: dict[str, str] = {}

    @property
    def time_datetime(self) -> datetime | None:
        """`time` parsed, or None when absent."""
        if self.time is None:
            return None
        return datetime.fromisoformat(self.time.replace("Z", "+00:00"))

    def to_headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The attributes as binary-mode headers; `extra` are user headers."""
        if extra or self.extensions:
            headers: dict[str, str] = dict(extra) if extra else {}
            for name, value in self.extensions.items():  # first: an attribute always wins
                headers[_CE_PREFIX + name] = value
            headers["ce_id"] = self.id
            headers["ce_source"] = self.source
            headers["ce_type"] = self.type
            headers["ce_specversion"] = self.specversion
        else:  # the usual case, in one step
            headers = {"ce_id": self.id, "ce_source": self.source, "ce_type": self.type,
                       "ce_specversion": self.specversion}
        if self.time is not None:
            headers["ce_time"] = self.time
        if self.subject is not None:
            headers["ce_subject"] = self.subject
        if self.datacontenttype is not None:
            headers[CONTENT_TYPE_HEADER] = self.datacontenttype
        if self.dataversion is not None:
            headers["ce_dataversion"] = str(self.dataversion)
        if self.correlationid is not None:
            headers["ce_correlationid"] = self.correlationid
        if self.causationid is not None:
            headers["ce_causationid"] = self.causationid
        if self.traceparent is not None:
            headers["ce_traceparent"] = self.traceparent
        if self.aggregatetype is not None:
            headers["ce_aggregatetype"] = self.aggregatetype
        return headers

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], data: bytes) -> Envelope:
        """Read a binary-mode message; raises DecodeError when it is not a CloudEvent."""
        get = headers.get
        event_id, source, event_type = get("ce_id"), get("ce_source"), get("ce_type")
        if not (event_id and source and event_type):
            missing = [h for h in ("ce_id", "ce_source", "ce_type") if not get(h)]
            raise DecodeError(
                f"not a CloudEvent: header(s) {', '.join(missing)} missing", kind="not-an-event"
            )
        version = get("ce_dataversion")
        dataversion: int | None = None
        if version is not None and (dataversion := _DATAVERSIONS.get(version)) is None:
            # ASCII digits only: int() would also take " 2", "2_0" and other scripts' digits,
            # and raise ValueError past 4300 digits.
            if not (version.isascii() and version.isdigit() and len(version) <= 18
                    and int(version) >= 1):
                raise DecodeError(
                    f"ce_dataversion must be an integer >= 1, got {version[:100]!r}",
                    kind="bad-envelope",
                )
            dataversion = int(version)
            if len(_DATAVERSIONS) < 256:  # a few versions are in use: parse each once
                _DATAVERSIONS[version] = dataversion
        specversion = get("ce_specversion", SPECVERSION)
        if specversion != SPECVERSION and not specversion.startswith("1."):
            raise DecodeError(f"unsupported CloudEvents specversion {specversion!r}",
                              kind="bad-envelope")
        if _PLAIN_HEADERS.issuperset(headers):  # the usual case: no extension, no user header
            extensions: dict[str, str] = {}
        else:
            extensions = {
                name[len(_CE_PREFIX):]: value
                for name, value in headers.items()
                if name.startswith(_CE_PREFIX) and name not in _KNOWN_HEADERS
            }
        return cls(
            id=event_id,
            source=source,
            type=event_type,
            data=data,
            specversion=specversion,
            time=get("ce_time"),
            subject=get("ce_subject"),
            datacontenttype=get(CONTENT_TYPE_HEADER),
            dataversion=dataversion,
            correlationid=get("ce_correlationid"),
            causationid=get("ce_causationid"),
            traceparent=get("ce_traceparent"),
            aggregatetype=get("ce_aggregatetype"),
            extensions=extensions,
        )


_KNOWN_HEADERS = frozenset(_ATTRIBUTE_HEADERS.values())
_DATAVERSIONS: dict[str, int] = {}  # ce_dataversion values seen and valid -> their number
_PLAIN_HEADERS = _KNOWN_HEADERS | {CONTENT_TYPE_HEADER}


def user_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers that are not CloudEvents attributes (the user's own)."""
    return {
        name: value
        for name, value in headers.items()
        if not name.startswith(_CE_PREFIX) and name != CONTENT_TYPE_HEADER
    }

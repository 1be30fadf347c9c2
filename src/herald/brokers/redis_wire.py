"""What the Redis broker writes into Redis: key names, entry fields, offsets, Lua scripts.

Kept apart from the broker and the subscription so the layout is one page a
plain-client user (or an operator with `redis-cli`) can read:

- a topic is `partitions` streams `<ns><topic>:<p>`; a record's partition is
  `partition_for(key)` (CRC32 of the key) like every herald broker;
- an entry's fields are its headers (CloudEvents binary mode: `ce_id`,
  `ce_type`, ...), `data` (the body) and `ce_partitionkey` (the key, absent
  when there is none);
- a herald group is the Redis consumer group `<ns><group>` on every stream;
- bookkeeping lives under `<ns>herald:` (topics, delays, members, leases).

The Lua scripts that read and write these are in `redis_scripts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from herald.brokers import typed_options
from herald.errors import ConfigError

RESERVED_PREFIX = "herald:"
DATA_FIELD = b"data"
# The key travels as CloudEvents' partitioning extension, as on the other brokers.
KEY_FIELD = b"ce_partitionkey"
_ESCAPE = "+"  # a header named `data`, `ce_partitionkey` or `+...` is stored as `+<name>`
_RESERVED = ("data", "ce_partitionkey")

# -- offsets -------------------------------------------------------------------
# A stream id is "<ms>-<seq>"; LogAdmin needs one integer per record that is
# unique within the topic and grows with it. offset = ((ms << 32) | seq) << 10 | p:
# exact for every id Redis generates (seq < 2**32 within one millisecond) and
# every partition below 1024, ordered by time first, so read_topic can merge
# the partitions of a topic in offset order.
SEQ_BITS = 32
PARTITION_BITS = 10
MAX_PARTITIONS = 1 << PARTITION_BITS
_SEQ_MASK = (1 << SEQ_BITS) - 1
_PARTITION_MASK = MAX_PARTITIONS - 1
MAX_SEQ = (1 << 64) - 1


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def encode_offset(ms: int, seq: int, partition: int) -> int:
    return (((ms << SEQ_BITS) | seq) << PARTITION_BITS) | partition


def offset_of(entry_id: bytes | str, partition: int) -> int:
    ms, seq = parse_id(entry_id)
    return encode_offset(ms, seq, partition)


def decode_offset(offset: int) -> tuple[int, int, int]:
    """(ms, seq, partition) of an offset made by `encode_offset`."""
    partition = offset & _PARTITION_MASK
    rest = offset >> PARTITION_BITS
    return rest >> SEQ_BITS, rest & _SEQ_MASK, partition


def id_before(entry_id: bytes | str) -> bytes:
    """The greatest id below `entry_id`: XREADGROUP's history cursor is exclusive."""
    ms, seq = parse_id(entry_id)
    if seq > 0:
        return f"{ms}-{seq - 1}".encode()
    if ms > 0:
        return f"{ms - 1}-{MAX_SEQ}".encode()
    return b"0-0"


def start_after(after: int | None, partition: int) -> str:
    """XRANGE start for records of `partition` whose offset is greater than `after`."""
    if not after or after < 0:
        return "-"
    ms, seq, p = decode_offset(after)
    # Same (ms, seq) sorts by partition: a higher partition is still after it.
    return f"{ms}-{seq}" if partition > p else f"({ms}-{seq}"


# -- entries -------------------------------------------------------------------
def entry_fields(body: bytes, headers: Mapping[str, str], key: str | None) -> list[bytes]:
    """The entry's fields and values, flat: `data`, `ce_partitionkey` (when there is a key), headers."""
    fields = [DATA_FIELD, body]
    if key is not None:
        fields += (KEY_FIELD, key.encode())
    for name, value in headers.items():
        if name in _RESERVED or name.startswith(_ESCAPE):
            name = _ESCAPE + name
        fields += (name.encode(), value.encode())
    return fields


def decode_entry(
    fields: Mapping[bytes, bytes] | Sequence[bytes],
) -> tuple[str | None, dict[str, str], bytes]:
    """(key, headers, body) of an entry, from a field dict or a flat field list.
    Bytes that are not UTF-8 (a plain client's) become U+FFFD rather than
    failing the whole read."""
    body = b""
    key: str | None = None
    headers: dict[str, str] = {}
    pairs = fields.items() if isinstance(fields, Mapping) else zip(fields[::2], fields[1::2], strict=True)
    for field, value in pairs:
        if field == DATA_FIELD:
            body = value
        elif field == KEY_FIELD:
            key = value.decode("utf-8", "replace")
        else:
            name = field.decode("utf-8", "replace")
            if name.startswith(_ESCAPE):
                name = name[1:]
            headers[name] = value.decode("utf-8", "replace")
    return key, headers, body


def netstrings(*items: bytes) -> bytes:
    """`len:bytes` items back to back: what the Lua scripts split (cmsgpack in
    Redis' Lua cannot read msgpack `bin`, so a plain format is safer)."""
    return b"".join([b"%d:%s" % (len(item), item) for item in items])


def pack_append(stream: str, fields: list[bytes]) -> bytes:
    """One record for the PUBLISH script: append `fields` to `stream`."""
    return netstrings(b"x", stream.encode(), b"%d" % (len(fields) // 2), *fields)


def pack_delayed(record_id: str, due_ms: int, topic: str, stream: str, fields: list[bytes]) -> bytes:
    """One record for the PUBLISH script: park it until `due_ms` (MOVE_DUE appends it)."""
    parked = netstrings(stream.encode(), topic.encode(), *fields)
    return netstrings(b"d", record_id.encode(), b"%d" % due_ms, topic.encode(), parked)




# -- key names -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key the broker uses, under one namespace prefix."""

    ns: str

    def stream(self, topic: str, partition: int) -> str:
        return f"{self.ns}{topic}:{partition}"

    def group(self, group: str) -> str:
        return f"{self.ns}{group}"

    def strip(self, name: str) -> str:
        return name[len(self.ns):] if self.ns and name.startswith(self.ns) else name

    @property
    def topics(self) -> str:
        """Hash topic -> partition count: the registry LogAdmin lists."""
        return f"{self.ns}herald:topics"

    @property
    def delayed(self) -> str:
        """Sorted set of delayed record ids scored by due time (unix ms)."""
        return f"{self.ns}herald:delayed"

    @property
    def delayed_data(self) -> str:
        return f"{self.ns}herald:delayed:data"

    @property
    def delayed_count(self) -> str:
        return f"{self.ns}herald:delayed:count"

    @property
    def retention_lock(self) -> str:
        return f"{self.ns}herald:retention-lock"

    # The group's length goes first, so no group and topic pair reads as another.
    def members(self, group: str, topic: str) -> str:
        return f"{self.ns}herald:members:{len(group)}:{group}:{topic}"

    def lease(self, group: str, topic: str, partition: int) -> str:
        return f"{self.ns}herald:lease:{len(group)}:{group}:{topic}:{partition}"

    def dedup(self, group: str, event_id: str) -> str:
        return f"{self.ns}herald:dedup:{len(group)}:{group}:{event_id}"


def check_topic(topic: str) -> None:
    if topic.startswith(RESERVED_PREFIX):
        raise ConfigError(
            f"topic {topic!r}: names starting with {RESERVED_PREFIX!r} are the Redis broker's "
            "own bookkeeping keys; pick another name"
        )


# -- URLs ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    ssl: bool

    def __str__(self) -> str:
        return f"{'rediss' if self.ssl else 'redis'}://{self.host}:{self.port}/{self.db}"


def parse_url(url: str, kinds: dict[str, type]) -> tuple[Address, dict[str, Any]]:
    """The address and typed query options of `redis://[user:pass@]host:port/db?...`."""
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {url!r}: {exc}; expected redis://host:6379/0") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"bad Redis URL {url!r}: the scheme must be redis:// or rediss://")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigError(f"bad Redis URL {url!r}: the path must be a database number, e.g. /0")
    address = Address(
        host=parts.hostname or "127.0.0.1",
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme == "rediss",
    )
    options = typed_options(dict(parse_qsl(parts.query, keep_blank_values=True)), kinds, url)
    return address, options


def redis_client(address: Address, *, connect_timeout: float, socket_timeout: float) -> Any:
    """A redis-py asyncio client without its own retries: herald retries itself,
    because a blindly repeated XREADGROUP would hide records delivered to it."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis.asyncio.Redis(
        host=address.host,
        port=address.port,
        db=address.db,
        username=address.username,
        password=address.password,
        ssl=address.ssl,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )

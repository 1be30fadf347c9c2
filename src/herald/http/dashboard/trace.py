"""The chain of one correlation id as a causal tree.

Every event published while handling another carries the handled event's
`correlationid` and names it in `causationid` (DESIGN.md section 3), so the
records that share a correlation id, linked by causation, form a tree: the
root is the event that started the chain, each child was caused by its
parent. The records come from the broker's topics (through LogAdmin) and
from the event store; one event found in several places (a topic and a
stream, or a topic and its dead-letter topic) is one node that lists them all.

The search is bounded: at most `scan` records per topic, oldest first (the
LogAdmin reads forward only), and the newest `scan` events of the store. The
answer says where it stopped, so a partial tree is never mistaken for a whole one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from herald.brokers.base import Delivery, LogAdmin, TopicInfo
from herald.errors import DecodeError
from herald.event import Envelope
from herald.retry import ERROR_MESSAGE, GROUP, REASON
from herald.store.base import EventStore, StoredEvent

PAGE = 1000
DEFAULT_SCAN = 10_000
MAX_SCAN = 100_000


@dataclass(slots=True)
class Found:
    """One place an event of the chain was found: a topic record or a stored event."""

    envelope: Envelope
    topic: Delivery | None = None
    dead_letter: bool = False
    stored: StoredEvent | None = None


@dataclass(slots=True)
class Search:
    """What the search read: records per topic, events of the store, and where it stopped early."""

    found: list[Found] = field(default_factory=list)
    topics: dict[str, int] = field(default_factory=dict)
    store: int | None = None
    truncated: list[str] = field(default_factory=list)


def _matches(headers: dict[str, str], correlation_id: str) -> bool:
    # A chain's root carries its own id as correlation id; an event from a tool that
    # sets no correlation id is still found by its id.
    return headers.get("ce_correlationid") == correlation_id or headers.get("ce_id") == correlation_id


async def search_topics(
    admin: LogAdmin,
    infos: Iterable[TopicInfo],
    correlation_id: str,
    *,
    skip_prefixes: Iterable[str],
    dead_prefixes: Iterable[str],
    scan: int,
    into: Search,
) -> None:
    """Read up to `scan` records of every topic except retry stages, keeping the chain's.

    Records of dead-letter topics are kept too: the node then says it was dead-lettered.
    """
    skip, dead = tuple(skip_prefixes), tuple(dead_prefixes)
    for info in infos:
        if info.name.startswith(skip) and not info.name.startswith(dead):
            continue
        after, read = 0, 0
        while read < scan:
            page = await admin.read_topic(info.name, after=after, limit=min(PAGE, scan - read))
            if not page:
                break
            read += len(page)
            after = page[-1].offset
            for record in page:
                if not _matches(record.headers, correlation_id):
                    continue
                try:
                    envelope = Envelope.from_headers(record.headers, record.body)
                except DecodeError:
                    continue
                into.found.append(Found(envelope, record, info.name.startswith(dead)))
        into.topics[info.name] = read
        if read >= scan and read < info.messages:
            into.truncated.append(info.name)


async def search_store(store: EventStore, correlation_id: str, *, scan: int, into: Search) -> None:
    """The newest `scan` events of the store (by global position), keeping the chain's."""
    last = await store.last_position()
    after, read = max(0, last - scan), 0
    while read < scan:
        page = await store.read_all(after, min(PAGE, scan - read))
        if not page:
            break
        read += len(page)
        after = page[-1].position
        for stored in page:
            envelope = stored.envelope
            if envelope.correlationid == correlation_id or envelope.id == correlation_id:
                into.found.append(Found(envelope, stored=stored))
    into.store = read
    if last - scan > 0:
        into.truncated.append("event store")


@dataclass(slots=True)
class _Node:
    envelope: Envelope
    when: datetime | None
    places: list[Found] = field(default_factory=list)
    children: list[_Node] = field(default_factory=list)


def _when(found: Found) -> datetime | None:
    """The event's `time`, else when the broker or the store recorded it."""
    envelope = found.envelope
    if envelope.time is not None:
        try:
            parsed = envelope.time_datetime
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if found.topic is not None:
        return datetime.fromtimestamp(found.topic.timestamp, UTC)
    if found.stored is not None:
        return found.stored.recorded_at
    return None


def _millis(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds() * 1000, 3)


def build_tree(correlation_id: str, found: Sequence[Found]) -> dict[str, Any]:
    """The JSON of the tree: `nodes` in depth-first order (children by time), each
    with its `parent`, `depth`, timings and where it was found; `services` in
    order of first appearance."""
    nodes: dict[str, _Node] = {}
    for place in found:
        node = nodes.get(place.envelope.id)
        if node is None:
            node = nodes[place.envelope.id] = _Node(place.envelope, _when(place))
        elif place.dead_letter is False and node.places and all(p.dead_letter for p in node.places):
            node.envelope = place.envelope  # the original record over its dead-letter copy
        node.places.append(place)
    never = datetime.max.replace(tzinfo=UTC)

    def by_time(node: _Node) -> tuple[datetime, str]:
        return (node.when or never, node.envelope.id)

    roots = []
    for node in nodes.values():
        parent = nodes.get(node.envelope.causationid or "")
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    start = min((n.when for n in nodes.values() if n.when is not None), default=None)

    def visit(node: _Node, parent: _Node | None, depth: int) -> None:
        if node.envelope.id in seen:
            return
        seen.add(node.envelope.id)
        out.append(_node_json(node, parent, depth, start))
        for child in sorted(node.children, key=by_time):
            visit(child, node, depth + 1)

    for root in sorted(roots, key=by_time):
        visit(root, None, 0)
    for node in sorted(nodes.values(), key=by_time):  # a causation cycle: no root reaches it
        visit(node, None, 0)
    services: list[str] = []
    for entry in out:
        if entry["source"] not in services:
            services.append(entry["source"])
    end = max((n.when for n in nodes.values() if n.when is not None), default=None)
    return {
        "correlationid": correlation_id,
        "nodes": out,
        "services": services,
        "started": start.isoformat() if start else None,
        "duration_ms": _millis(end, start),
    }


def _node_json(node: _Node, parent: _Node | None, depth: int, start: datetime | None) -> dict[str, Any]:
    envelope = node.envelope
    causation = envelope.causationid
    return {
        "id": envelope.id,
        "source": envelope.source,
        "type": envelope.type,
        "subject": envelope.subject,
        "time": node.when.isoformat() if node.when else None,
        "correlationid": envelope.correlationid,
        "causationid": causation,
        "traceparent": envelope.traceparent,
        "parent": parent.envelope.id if parent else None,
        "missing_parent": causation if parent is None and causation and causation != envelope.id else None,
        "depth": depth,
        "since_parent_ms": _millis(node.when, parent.when) if parent else None,
        "since_start_ms": _millis(node.when, start),
        "children": len(node.children),
        "topics": [
            {"topic": p.topic.topic, "partition": p.topic.partition, "offset": p.topic.offset,
             "key": p.topic.key}
            for p in node.places if p.topic is not None and not p.dead_letter
        ],
        "dead_letters": [
            {"id": f"{p.topic.topic}@{p.topic.offset}", "reason": p.topic.headers.get(REASON, ""),
             "group": p.topic.headers.get(GROUP, ""), "error": p.topic.headers.get(ERROR_MESSAGE, "")}
            for p in node.places if p.topic is not None and p.dead_letter
        ],
        "streams": [
            {"stream": p.stored.stream, "version": p.stored.version, "position": p.stored.position}
            for p in node.places if p.stored is not None
        ],
    }

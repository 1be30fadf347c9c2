"""Dead letters as first-class records: list, show, replay, discard.

A dead letter is a record of a `<dead_letter_prefix><topic>` topic, with
the reason in its headers. Its id is `<dead-letter topic>@<offset>`.
Replay sends it back through the retry topic of its original topic, marked
for the group that failed it, so only that group's handler sees it again
(other groups had handled it already); `to_topic=True` republishes it on
the original topic instead, for every group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from herald import retry as h
from herald.brokers.base import Broker, Delivery, LogAdmin, Message
from herald.errors import ConfigError, DeadLetterNotFound, HeraldError
from herald.retry import RetryPolicy

REPLAY_DROPS = frozenset(h.INTERNAL_HEADERS) - {h.ORIGINAL_TOPIC}


@dataclass(slots=True)
class DeadLetter:
    id: str
    topic: str
    offset: int
    original_topic: str
    group: str
    reason: str
    error_type: str
    error_message: str
    attempts: int
    first_failure: str | None
    last_failure: str | None
    event_id: str | None
    event_type: str | None
    key: str | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def from_delivery(cls, record: Delivery, prefix: str) -> DeadLetter:
        hd = record.headers
        original = hd.get(h.ORIGINAL_TOPIC) or record.topic.removeprefix(prefix)
        return cls(
            id=f"{record.topic}@{record.offset}",
            topic=record.topic,
            offset=record.offset,
            original_topic=original,
            group=hd.get(h.GROUP, ""),
            reason=hd.get(h.REASON, "unknown"),
            error_type=hd.get(h.ERROR_TYPE, ""),
            error_message=hd.get(h.ERROR_MESSAGE, ""),
            attempts=h.header_count(hd.get(h.ATTEMPTS)),
            first_failure=hd.get(h.FIRST_FAILURE),
            last_failure=hd.get(h.LAST_FAILURE),
            event_id=hd.get("ce_id"),
            event_type=hd.get("ce_type"),
            key=record.key,
            headers=dict(hd),
            body=record.body,
        )


def parse_id(dead_letter_id: str) -> tuple[str, int]:
    topic, sep, offset = dead_letter_id.rpartition("@")
    if not sep or not topic or not offset.isdigit():
        raise ConfigError(
            f"bad dead letter id {dead_letter_id!r}: expected <topic>@<offset>, "
            "as printed by `herald dlq list`"
        )
    return topic, int(offset)


class DeadLetters:
    """Dead-letter operations on one broker. Each method is one broker round trip or a few."""

    def __init__(self, broker: Broker, policy: RetryPolicy | None = None) -> None:
        if not isinstance(broker, LogAdmin):
            raise HeraldError(f"the {broker.name} broker cannot list dead letters")
        self._broker = broker
        self._admin: LogAdmin = broker
        self._policy = policy or RetryPolicy()

    async def topics(self) -> list[str]:
        prefix = self._policy.dead_letter_prefix
        return [t.name for t in await self._admin.topics() if t.name.startswith(prefix)]

    async def list(self, topic: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first; `topic` is an original or a dead-letter topic."""
        prefix = self._policy.dead_letter_prefix
        if topic is not None:
            names = [topic if topic.startswith(prefix) else prefix + topic]
        else:
            names = await self.topics()
        out: list[DeadLetter] = []
        for name in names:
            after = 0
            while len(out) < limit:
                records = await self._admin.read_topic(name, after=after, limit=min(limit, 500))
                if not records:
                    break
                out.extend(DeadLetter.from_delivery(r, prefix) for r in records)
                after = records[-1].offset
        return out[:limit]

    async def show(self, dead_letter_id: str) -> DeadLetter:
        topic, offset = parse_id(dead_letter_id)
        prefix = self._policy.dead_letter_prefix
        # replay and discard delete what show finds: never a record of a live topic
        if not topic.startswith(prefix):
            raise DeadLetterNotFound(
                f"{dead_letter_id!r} is not a dead letter: dead-letter topics start with "
                f"{prefix!r}; `herald dlq list` shows the ids"
            )
        records = await self._admin.read_topic(topic, after=offset - 1, limit=1)
        if not records or records[0].offset != offset:
            raise DeadLetterNotFound(
                f"no dead letter {dead_letter_id!r}; `herald dlq list` shows the ids"
            )
        return DeadLetter.from_delivery(records[0], self._policy.dead_letter_prefix)

    async def replay(self, dead_letter_id: str, *, to_topic: bool = False) -> DeadLetter:
        """Send it back to its handler, then remove it. Published before removed,
        so a crash in between means a duplicate, never a loss."""
        letter = await self.show(dead_letter_id)
        headers = {k: v for k, v in letter.headers.items() if k not in REPLAY_DROPS}
        if to_topic or not letter.group:
            target = letter.original_topic
        else:
            # The subscriber's own retry topic, whatever its policy's prefix was.
            target = letter.headers.get(h.RETRY_TOPIC) or self._policy.retry_topic(letter.original_topic)
            headers[h.RETRY_GROUP] = letter.group
            headers[h.RETRY_COUNT] = "0"
        await self._broker.publish([Message(target, letter.body, headers, letter.key)])
        await self._admin.delete(letter.topic, [letter.offset])
        return letter

    async def discard(self, dead_letter_id: str) -> DeadLetter:
        letter = await self.show(dead_letter_id)
        await self._admin.delete(letter.topic, [letter.offset])
        return letter

    async def replay_many(
        self, letters: Sequence[DeadLetter], *, to_topic: bool = False,
        progress: Callable[[DeadLetter], Awaitable[None]] | None = None,
    ) -> int:
        for letter in letters:
            await self.replay(letter.id, to_topic=to_topic)
            if progress is not None:
                await progress(letter)
        return len(letters)

"""The domain-event unit of work: entities raise events, the unit writes them.

`Entity` is the mixin for plain-table entities that raise domain events
(freedom's `DomainEvent`); `UnitOfWork` is one business transaction that
writes the tracked entities' events to the outbox with their rows, made by
`Outbox.unit_of_work(topic)`; `envelope_of` turns an Event (or a Protobuf
message) into its CloudEvents envelope for code below the App.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from herald.envelopes import make_envelope
from herald.errors import ConfigError
from herald.event import Envelope, utc_now_iso
from herald.store.base import StoreTransaction

if TYPE_CHECKING:
    from herald.store.outbox import Outbox

__all__ = ["Entity", "UnitOfWork", "envelope_of"]


class Entity:
    """A mixin for entities that raise domain events (freedom's `DomainEvent`):

    ```python
    class Goods(Entity):
        def shopping(self, amount: int) -> None:
            self.stock -= amount
            self.raise_event(GoodsShopped(goods_id=self.id, amount=amount))
        def identity(self) -> str:
            return str(self.id)
    ```
    The events wait on the entity until a unit of work writes them to the outbox.
    """

    def identity(self) -> str:
        """The entity's id: the subject and key of the events it raises."""
        raise ConfigError(f"{type(self).__name__} must define identity() -> str to raise events")

    def raise_event(self, event: Any) -> None:
        """Record a domain event (an Event or an Envelope); published after commit."""
        if event is None or isinstance(event, str | bytes | dict):
            raise ConfigError(f"raise_event takes an Event or an Envelope, got {type(event).__name__}")
        self.__dict__.setdefault("_herald_events", []).append(event)

    def pending_events(self) -> list[Any]:
        return list(self.__dict__.get("_herald_events", ()))

    def clear_events(self) -> None:
        self.__dict__.pop("_herald_events", None)


class UnitOfWork:
    """One business transaction: `tx` for your rows, `track` for entities whose
    raised events commit with them. Not safe to share between tasks."""

    def __init__(self, outbox: Outbox, tx: StoreTransaction, topic: str) -> None:
        self.outbox = outbox
        self.tx = tx
        self.topic = topic
        self._tracked: list[tuple[Entity, str]] = []

    def track(self, entity: Entity, *, topic: str | None = None) -> None:
        """Write the entity's raised events (to `topic`, default the unit's) on commit."""
        if not isinstance(entity, Entity):
            raise ConfigError(f"track takes an Entity, got {type(entity).__name__}")
        if all(e is not entity for e, _ in self._tracked):
            self._tracked.append((entity, topic or self.topic))

    async def flush(self) -> None:
        """Write the tracked entities' events now (done on commit anyway)."""
        for entity, topic in self._tracked:
            events = entity.pending_events()
            if not events:
                continue
            subject = entity.identity()
            if not isinstance(subject, str) or not subject:
                raise ConfigError(f"{type(entity).__name__}.identity() must return a non-empty str")
            envelopes = [
                e if isinstance(e, Envelope) else envelope_of(e, self._source(), subject=subject)
                for e in events
            ]
            await self.outbox.add_many(self.tx, topic, envelopes, key=subject)
            entity.clear_events()

    def discard(self) -> None:
        for entity, _ in self._tracked:
            entity.clear_events()
        self._tracked.clear()

    def _source(self) -> str:
        if self.outbox.source is None:
            raise ConfigError("entities raise Event objects: make the Outbox with source='your-service'")
        return self.outbox.source


def envelope_of(
    event: Any,
    source: str,
    *,
    parent: Envelope | None = None,
    subject: str | None = None,
    id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Envelope:
    """The CloudEvents envelope of an Event (or a Protobuf message), for code
    below the App. With `parent` (the event being handled) correlation and
    causation follow it, as `App.publish` does inside a handler; without one,
    `correlation_id` and `causation_id` (a request id, say) set them."""
    if parent is not None and (correlation_id is not None or causation_id is not None):
        raise ConfigError("envelope_of: give parent= or correlation_id=/causation_id=, not both")
    for name, value in (("correlation_id", correlation_id), ("causation_id", causation_id)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"envelope_of: {name} must be a non-empty string, got {value!r}")
    cls = type(event)
    if not hasattr(cls, "__event_type__") and not hasattr(cls, "DESCRIPTOR"):
        raise ConfigError(
            f"cannot make an envelope of a {cls.__name__}: use an Event subclass "
            "(class X(Event, type='...')) or a Protobuf message"
        )
    envelope = make_envelope(source, None, event, parent, utc_now_iso(), subject=subject, id=id)
    if correlation_id is not None or causation_id is not None:  # (no parent: checked above)
        envelope = msgspec.structs.replace(
            envelope, correlationid=correlation_id or envelope.id, causationid=causation_id
        )
    return envelope

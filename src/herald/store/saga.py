"""Sagas (process managers): a long-running business process that reacts to
events, keeps its own state, sends commands, and undoes finished steps when a
later step fails (seed 002: order placed, payment failed -> cancel the order,
release the inventory).

```python
order = Saga("order", OrderState)

@order.starts(OrderPlaced, id=lambda e: e.order_id)
async def placed(event: OrderPlaced, saga: SagaContext[OrderState]) -> None:
    saga.state.amount = event.amount
    saga.send("inventory-commands", ReserveInventory(order_id=event.order_id))
    saga.compensate("order-commands", CancelOrder(order_id=event.order_id))
    saga.schedule("reservation", after=30)
```

A definition says which events start a saga and which move it on; the
`SagaManager` (saga_manager.py) runs them: it loads and saves the state,
records handled event ids, and writes commands and timeouts to the outbox,
all in one transaction. `saga.fail(reason)` sends the registered
compensations, newest first (undo in reverse order of doing).
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

import msgspec

from herald.codecs import PayloadDecoder, json_codec
from herald.errors import ConfigError
from herald.event import Envelope, type_name_of, version_of
from herald.store.base import StoreError, StoreTransaction

__all__ = [
    "TIMEOUT_TYPE",
    "Saga",
    "SagaContext",
    "SagaError",
    "SagaNotFound",
    "SagaStatus",
]

S = TypeVar("S")
E = TypeVar("E")
TIMEOUT_TYPE = "herald.saga.timeout"
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")

EventHandler = Callable[[Any, "SagaContext[Any]"], Awaitable[None] | None]
Handles = Callable[[E, "SagaContext[S]"], Awaitable[None] | None]
TimeoutHandler = Callable[["SagaContext[Any]"], Awaitable[None] | None]


class SagaError(StoreError):
    """A saga was defined or driven wrongly; the message says how to fix it."""


class SagaNotFound(SagaError, LookupError):
    """An event or timeout names a saga that was never started."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


class SagaStatus(StrEnum):
    ACTIVE = "active"  # started, not finished
    COMPLETED = "completed"  # every step done
    FAILED = "failed"  # gave up; compensations sent


class Command(msgspec.Struct, frozen=True):
    """A message the saga sends (kept in its state until sent, for compensations)."""

    topic: str
    type: str
    version: int
    data: msgspec.Raw
    key: str | None = None


class Timeout(msgspec.Struct, frozen=True):
    """The body of a timeout message; `token` tells a rescheduled timeout's
    stale message from the current one."""

    saga: str
    id: str
    name: str
    token: str


class Meta(msgspec.Struct):
    """What the manager keeps beside the user's state."""

    timeouts: dict[str, tuple[str, float]] = {}  # name -> (token, due)
    compensations: list[Command] = []
    reason: str | None = None


@dataclass(slots=True)
class Route:
    saga: Saga[Any]
    handler: EventHandler
    starts: bool
    decoder: PayloadDecoder
    id_of: Callable[[Any], str] | None


@dataclass(slots=True)
class Outgoing:
    topic: str
    message: Any  # an Event or an Envelope
    key: str | None
    deliver_at: float | None = None


class Saga(Generic[S]):
    """A process manager's definition: its name, its state class (a msgspec
    Struct or dataclass whose fields all have defaults) and its handlers.

    Handlers are `async def` or plain functions taking `(event, saga)`;
    timeout handlers take `(saga)`. Define them at import time; a Saga is
    read-only once a SagaManager uses it.
    """

    def __init__(self, name: str, state: type[S]) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"saga name must be 1-100 letters, digits or _.:-, got {name!r}")
        if not isinstance(state, type):
            raise ConfigError(f"saga state must be a class (a msgspec Struct), got {state!r}")
        try:
            initial = state()
            json_codec.encode(initial)
        except (TypeError, ConfigError) as exc:
            raise ConfigError(
                f"saga {name!r}: the state class {state.__name__} must be JSON-encodable and "
                f"buildable with no arguments (give every field a default): {exc}"
            ) from exc
        self.name = name
        self.state_type = state
        self.routes: dict[str, Route] = {}
        self.timeouts: dict[str, TimeoutHandler] = {}

    def starts(
        self, event: type[E], *, id: Callable[[E], str] | None = None
    ) -> Callable[[Handles[E, S]], Handles[E, S]]:
        """Decorator: `event` starts a saga (or, if it exists, moves it on).
        `id` picks the saga id from the event (default: the envelope's subject)."""
        return self._route(event, id, starts=True)

    def on(
        self, event: type[E], *, id: Callable[[E], str] | None = None
    ) -> Callable[[Handles[E, S]], Handles[E, S]]:
        """Decorator: `event` moves an existing saga on; for an id that was
        never started, `SagaManager.handle` raises SagaNotFound."""
        return self._route(event, id, starts=False)

    def on_timeout(
        self, name: str
    ) -> Callable[[Callable[[SagaContext[S]], Awaitable[None] | None]],
                  Callable[[SagaContext[S]], Awaitable[None] | None]]:
        """Decorator: called when the timeout `name` (see `SagaContext.schedule`)
        comes due while the saga is active and the timeout was not cancelled."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"timeout name must be 1-100 letters, digits or _.:-, got {name!r}")

        def register(fn: Callable[[SagaContext[S]], Awaitable[None] | None]
                     ) -> Callable[[SagaContext[S]], Awaitable[None] | None]:
            if not callable(fn):
                raise ConfigError(f"on_timeout({name!r}) decorates a function, got {fn!r}")
            if name in self.timeouts:
                raise ConfigError(f"saga {self.name!r} already has a handler for timeout {name!r}")
            self.timeouts[name] = fn
            return fn

        return register

    def _route(
        self, event: type[E], id_of: Callable[[E], str] | None, *, starts: bool
    ) -> Callable[[Handles[E, S]], Handles[E, S]]:
        if not isinstance(event, type) or not hasattr(event, "__event_type__"):
            raise ConfigError(f"saga {self.name!r}: handlers take herald Event classes, got {event!r}")
        if id_of is not None and not callable(id_of):
            raise ConfigError(f"saga {self.name!r}: id= must be a function of the event, got {id_of!r}")
        event_type = type_name_of(event)

        def register(fn: Handles[E, S]) -> Handles[E, S]:
            if not callable(fn):
                raise ConfigError(f"saga {self.name!r}: {event_type} handler must be a function")
            if event_type in self.routes:
                raise ConfigError(f"saga {self.name!r} already handles {event_type}")
            self.routes[event_type] = Route(self, fn, starts, PayloadDecoder([event]), id_of)
            return fn

        return register

    def __repr__(self) -> str:
        return f"<Saga {self.name!r} on {', '.join(sorted(self.routes)) or 'nothing'}>"


@dataclass(slots=True)
class SagaContext(Generic[S]):
    """One saga instance while a handler runs: change `state`, `send`
    commands, `schedule` timeouts, then `complete()` or `fail()`.
    Everything takes effect when the handler returns, in one transaction
    with the state; if it raises, nothing does (the event is redelivered).
    """

    saga: Saga[S]
    id: str
    state: S
    status: SagaStatus
    version: int  # saved versions so far (0: new)
    envelope: Envelope | None  # the event or timeout message being handled
    tx: StoreTransaction  # the transaction, for reading or writing your own tables
    meta: Meta
    now: float
    outgoing: list[Outgoing] = field(default_factory=list)
    new_timeouts: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def is_new(self) -> bool:
        """True while handling the event that starts this saga."""
        return self.version == 0

    @property
    def finished(self) -> bool:
        return self.status is not SagaStatus.ACTIVE

    @property
    def reason(self) -> str | None:
        """Why the saga failed, once it did."""
        return self.meta.reason

    def send(self, topic: str, command: Any, *, key: str | None = None, delay: float | None = None) -> None:
        """Send a command (an Event) through the outbox, keyed by the saga id
        unless `key` says otherwise; `delay` seconds holds it back."""
        _check_topic(topic)
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0):
            raise ConfigError(f"delay must be seconds >= 0, got {delay!r}")
        self.outgoing.append(Outgoing(topic, command, key or self.id,
                                      None if not delay else self.now + delay))

    def compensate(self, topic: str, command: Any, *, key: str | None = None) -> None:
        """Register a command that undoes a step; `fail()` sends the registered
        ones newest first. Kept in the saga's state until then."""
        _check_topic(topic)
        cls = type(command)
        if not hasattr(cls, "__event_type__"):
            raise ConfigError(f"compensate takes an Event, got {cls.__name__}")
        self.meta.compensations.append(
            Command(topic, type_name_of(cls), version_of(cls), msgspec.Raw(json_codec.encode(command)),
                    key or self.id)
        )

    def schedule(self, name: str, *, after: float) -> None:
        """Arm the timeout `name` to fire in `after` seconds (a delayed message);
        arming it again replaces the earlier one."""
        if name not in self.saga.timeouts:
            raise ConfigError(
                f"saga {self.saga.name!r} has no handler for timeout {name!r}: "
                f"add @{self.saga.name}.on_timeout({name!r})"
            )
        if isinstance(after, bool) or not isinstance(after, int | float) or after < 0:
            raise ConfigError(f"after must be seconds >= 0, got {after!r}")
        due = self.now + after
        token = uuid.uuid4().hex
        self.meta.timeouts[name] = (token, due)
        self.new_timeouts[name] = (token, due)

    def cancel(self, name: str) -> None:
        """Disarm a timeout; its message, when it comes, is ignored."""
        self.meta.timeouts.pop(name, None)
        self.new_timeouts.pop(name, None)

    def complete(self) -> None:
        """Done: timeouts are disarmed and compensations forgotten."""
        self.status = SagaStatus.COMPLETED
        self.meta.timeouts.clear()
        self.new_timeouts.clear()
        self.meta.compensations.clear()

    def fail(self, reason: str) -> None:
        """Give up: send the compensations newest first, disarm timeouts."""
        if not isinstance(reason, str) or not reason:
            raise ConfigError("fail() needs a reason (a non-empty string)")
        if self.status is SagaStatus.FAILED:
            return
        self.status = SagaStatus.FAILED
        self.meta.reason = reason
        self.meta.timeouts.clear()
        self.new_timeouts.clear()
        for command in reversed(self.meta.compensations):
            self.outgoing.append(Outgoing(command.topic, command, command.key))
        self.meta.compensations.clear()


def _check_topic(topic: object) -> None:
    if not isinstance(topic, str) or not topic:
        raise ConfigError(f"topic must be a non-empty string, got {topic!r}")


async def call(fn: Callable[..., Awaitable[None] | None], *args: Any) -> None:
    result = fn(*args)
    if inspect.isawaitable(result):
        await result

"""Event-sourced aggregates: state that changes only by applying events.

```python
class Todo(Aggregate, type="todo"):
    title: str = ""
    done: bool = False

    @classmethod
    def create(cls, todo_id: str, title: str) -> Todo:
        todo = cls(todo_id)
        todo.trigger(TodoCreated(todo_id=todo_id, title=title))
        return todo

    def complete(self) -> None:
        if self.done:
            raise TodoError("already done")       # invariants: checked before the event
        self.trigger(TodoCompleted(todo_id=self.id))

    @applies(TodoCreated)
    def _created(self, event: TodoCreated) -> None:
        self.title = event.title

    @applies(TodoCompleted)
    def _completed(self, event: TodoCompleted) -> None:
        self.done = True
```

Command methods check invariants and `trigger` events; `@applies` methods
change state and nothing else, so replaying the stream rebuilds the same
state. The annotated class attributes are the state a snapshot keeps.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import msgspec

from herald.codecs import JSON, json_codec
from herald.errors import ConfigError
from herald.event import Envelope, new_event_id, type_name_of, utc_now_iso, version_of
from herald.store.base import StoreError

__all__ = ["Aggregate", "AggregateNotFound", "PendingEvent", "applies"]

A = TypeVar("A", bound="Aggregate")
EventClass = type[Any]  # an alias: `type` is a keyword argument of __init_subclass__
F = TypeVar("F", bound=Callable[..., Any])

_APPLIES_ATTR = "__herald_applies__"


def applies(*event_classes: type[Any]) -> Callable[[F], F]:
    """Mark a method as the one that applies these event classes to the state.

    Explicit classes rather than type hints: the hint of a method is a string
    under `from __future__ import annotations`, and one method may apply several
    events (`@applies(TodoReopened, TodoRestored)`).
    """
    if not event_classes:
        raise ConfigError("@applies needs at least one event class, e.g. @applies(TodoCreated)")
    for cls in event_classes:
        if not (isinstance(cls, type) and hasattr(cls, "__event_type__")):
            raise ConfigError(f"@applies takes herald Event classes, got {cls!r}")

    def mark(fn: F) -> F:
        if not callable(fn):
            raise ConfigError(f"@applies decorates a method, got {fn!r}")
        setattr(fn, _APPLIES_ATTR, (*getattr(fn, _APPLIES_ATTR, ()), *event_classes))
        return fn

    return mark


class AggregateNotFound(StoreError, LookupError):
    """No aggregate has this id: its stream is empty."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event triggered but not saved yet. Its id is fixed when it is
    triggered, so saving the same aggregate again after a lost reply is an
    idempotent no-op in the store, not a second copy."""

    event: Any
    id: str
    time: str


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_MUTABLE = (list, dict, set, bytearray)


class Aggregate:
    """Base of event-sourced aggregates. Not safe to share between tasks: load
    one per command (the repository does).

    `version` counts every event applied, the pending ones included; the
    stream holds `version - len(pending_events)` of them.
    """

    aggregate_type: ClassVar[str] = "aggregate"
    snapshot_version: ClassVar[int] = 1
    _appliers: ClassVar[dict[type[Any], str]] = {}
    _event_classes: ClassVar[dict[str, type[Any]]] = {}
    _state_type: ClassVar[type[msgspec.Struct] | None] = None

    def __init_subclass__(
        cls, *, type: str | None = None, snapshot_version: int | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if type is not None:
            if not isinstance(type, str) or not re.fullmatch(r"[A-Za-z0-9_.:]+", type):
                raise ConfigError(
                    f"{cls.__name__}: type must be letters, digits, '_', '.' or ':', got {type!r}"
                )
            cls.aggregate_type = type
        elif "aggregate_type" not in vars(cls):
            cls.aggregate_type = _snake(cls.__name__)
        if snapshot_version is not None:
            if not isinstance(snapshot_version, int) or snapshot_version < 1:
                raise ConfigError(
                    f"{cls.__name__}: snapshot_version must be an integer >= 1, "
                    f"got {snapshot_version!r}"
                )
            cls.snapshot_version = snapshot_version
        appliers: dict[EventClass, str] = {}
        for klass in reversed(cls.__mro__):  # a subclass's method wins over its base's
            for name, member in vars(klass).items():
                for event_class in getattr(member, _APPLIES_ATTR, ()):
                    appliers[event_class] = name
        cls._appliers = appliers
        cls._event_classes = {type_name_of(e): e for e in appliers}
        cls._state_type = None  # built on first snapshot: hints may name later classes
        for name, value in vars(cls).items():
            if not name.startswith("_") and isinstance(value, _MUTABLE):
                raise ConfigError(
                    f"{cls.__name__}.{name}: a mutable class default would be shared by every "
                    f"instance; set it in __init__ instead (self.{name} = ...)"
                )

    def __init__(self, id: str) -> None:
        """A blank aggregate; the repository also makes blank ones to replay
        into, so a subclass's `__init__` must take the id alone."""
        if not isinstance(id, str) or not id:
            raise ConfigError(f"{type(self).__name__} id must be a non-empty string, got {id!r}")
        self.id = id
        self.version = 0
        self._pending: list[PendingEvent] = []

    # -- commands use these ------------------------------------------------------
    def trigger(self, event: Any) -> None:
        """Apply a new event at once and keep it to be saved."""
        self.apply(event)
        self._pending.append(PendingEvent(event, new_event_id(), utc_now_iso()))

    @property
    def pending_events(self) -> list[PendingEvent]:
        return list(self._pending)

    @property
    def committed_version(self) -> int:
        """The stream's version this aggregate was loaded at (saved up to)."""
        return self.version - len(self._pending)

    def mark_saved(self) -> None:
        """The repository calls this once the pending events are in the store."""
        self._pending.clear()

    # -- replay -------------------------------------------------------------------
    def apply(self, event: Any) -> None:
        """Change the state by one event (through its `@applies` method)."""
        name = self._appliers.get(type(event))
        if name is None:
            raise ConfigError(
                f"{type(self).__name__} has no @applies({type(event).__name__}) method; "
                f"add one that changes the state for this event"
            )
        getattr(self, name)(event)
        self.version += 1

    @classmethod
    def replay(cls: type[A], id: str, events: Iterable[Any]) -> A:
        """A new aggregate with `events` (typed, oldest first) applied."""
        aggregate = cls(id)
        for event in events:
            aggregate.apply(event)
        return aggregate

    @classmethod
    def event_classes(cls) -> Mapping[str, type[Any]]:
        """The event classes this aggregate applies, by CloudEvents type."""
        return dict(cls._event_classes)

    # -- snapshots ----------------------------------------------------------------
    def snapshot_state(self) -> dict[str, Any]:
        """The state a snapshot keeps: the annotated class attributes. Override
        with `restore_state` to keep something else."""
        fields = self.state_type().__struct_fields__
        return {name: getattr(self, name) for name in fields}

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Set the state from `snapshot_state()`'s output (already decoded JSON)."""
        try:
            typed = msgspec.convert(dict(state), self.state_type())
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{type(self).__name__} snapshot does not match its state: {exc}") from exc
        for name in typed.__struct_fields__:
            setattr(self, name, getattr(typed, name))

    @classmethod
    def state_type(cls) -> type[msgspec.Struct]:
        """The state as a msgspec struct type, from the annotated class attributes."""
        if cls._state_type is None:
            try:
                hints = typing.get_type_hints(cls)
            except NameError as exc:  # a hint names a class local to a function
                raise ConfigError(
                    f"cannot read the state annotations of {cls.__name__}: {exc}; define the "
                    "classes they name at module level, or override snapshot_state and restore_state"
                ) from exc
            base = set(typing.get_type_hints(Aggregate))
            fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
            for name, hint in hints.items():
                if name in base or name.startswith("_") or typing.get_origin(hint) is ClassVar:
                    continue
                if hasattr(cls, name):
                    fields.append((name, hint, getattr(cls, name)))
                else:
                    fields.append((name, hint))
            if not fields:
                raise ConfigError(
                    f"{cls.__name__} declares no state to snapshot: annotate its state as class "
                    "attributes (title: str = ''), or override snapshot_state and restore_state"
                )
            fields.sort(key=len)  # fields without a default first, as msgspec wants
            cls._state_type = msgspec.defstruct(f"{cls.__name__}State", fields, kw_only=True)
        return cls._state_type

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} v{self.version}>"


def to_envelope(
    pending: PendingEvent,
    *,
    source: str,
    subject: str,
    aggregate_type: str,
    parent: Envelope | None = None,
) -> Envelope:
    """The CloudEvents envelope of a pending event (JSON data, its class's version).

    With `parent` (the event being handled), correlation and causation follow
    it, as `App.publish` does for events published from a handler.
    """
    event = pending.event
    cls = type(event)
    if not hasattr(cls, "__event_type__"):
        raise ConfigError(
            f"aggregates trigger herald Event instances, got {cls.__name__}; "
            "define it as class X(Event, type='...')"
        )
    if parent is None:
        correlation, causation, traceparent = pending.id, None, None
    else:
        correlation, causation = parent.correlationid or parent.id, parent.id
        traceparent = parent.traceparent
    return Envelope(
        id=pending.id,
        source=source,
        type=type_name_of(cls),
        data=json_codec.encode(event),
        time=pending.time,
        subject=subject,
        datacontenttype=JSON,
        dataversion=version_of(cls),
        correlationid=correlation,
        causationid=causation,
        traceparent=traceparent,
        aggregatetype=aggregate_type,
    )

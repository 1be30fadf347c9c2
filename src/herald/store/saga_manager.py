"""`SagaManager`: runs Saga definitions (saga.py) on the event store's database.

For each event it loads the saga's row (locked on PostgreSQL; SQLite has one
writer), skips an event id it already handled, calls the handler, and then
in the same transaction saves the state with its version, records the event
id, and writes the handler's commands and timeouts to the outbox. So a
redelivered event does nothing, a crash before commit leaves no trace, and
no command is sent for a change that was not saved.

Timeouts are delayed messages (`Message.deliver_at`, native or emulated by
the broker) of type `herald.saga.timeout` on `timeout_topic`. One that comes
after the saga finished, after it was cancelled, or after it was armed again
is ignored.

Wiring in an App (the store layer does not import the App):

```python
manager = SagaManager(store, [order_saga], source="orders")

@app.subscriber("payment-events", group="order-saga")
async def on_payment(envelope: Envelope) -> None:
    await manager.handle(envelope)
```
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

import msgspec

from herald.codecs import JSON, json_codec
from herald.errors import ConfigError, DecodeError
from herald.event import Envelope, utc_now_iso
from herald.store.base import EventStore, StoreTransaction
from herald.store.outbox import (
    DEFAULT_TABLE,
    Outbox,
    check_table,
    envelope_of,
    run_ddl,
    sql_for,
    table_ref,
)
from herald.store.saga import (
    TIMEOUT_TYPE,
    Command,
    Meta,
    Route,
    Saga,
    SagaContext,
    SagaError,
    SagaNotFound,
    SagaStatus,
    Timeout,
    call,
)
from herald.store.saga_handled import HandledIds, handled_schema

__all__ = ["HandleResult", "SagaManager", "SagaRecord"]

S = TypeVar("S")
_meta_encode = msgspec.json.Encoder().encode
_meta_decode = msgspec.json.Decoder(Meta).decode
_timeout_decode = msgspec.json.Decoder(Timeout).decode
_IDS = uuid.UUID("6b1f0c52-8d0e-4a55-9a57-3f3c1d1e8a10")  # namespace of command ids


class HandleResult(StrEnum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"  # this event id was handled before: nothing done
    IGNORED = "ignored"  # no saga takes this type, or a stale timeout


@dataclass(frozen=True, slots=True)
class SagaRecord(Generic[S]):
    """A saga as stored."""

    saga: str
    id: str
    state: S
    status: SagaStatus
    version: int
    timeouts: dict[str, float]  # armed timeouts: name -> due (unix time)
    reason: str | None
    created_at: float
    updated_at: float


class SagaManager:
    """Handles events for `sagas`, with state in `table` of the store's
    database and commands through the outbox. `source` names this service in
    the commands' envelopes. Call `await manager.setup()` once (creates the
    tables; idempotent). Safe to share between tasks; several processes may
    handle events of the same sagas at once."""

    def __init__(
        self,
        store: EventStore,
        sagas: Sequence[Saga[Any]],
        *,
        source: str,
        timeout_topic: str = "herald-saga-timeouts",
        table: str = "herald_sagas",
        outbox_table: str = DEFAULT_TABLE,
        handled_ttl: float = 7 * 24 * 3600,
    ) -> None:
        if not isinstance(store, EventStore):
            raise ConfigError(f"SagaManager needs an EventStore, got {type(store).__name__}")
        if isinstance(sagas, Saga) or not all(isinstance(s, Saga) for s in sagas) or not sagas:
            raise ConfigError(f"sagas must be a non-empty list of Saga definitions, got {sagas!r}")
        if not isinstance(timeout_topic, str) or not timeout_topic:
            raise ConfigError(f"timeout_topic must be a non-empty string, got {timeout_topic!r}")
        if isinstance(handled_ttl, bool) or not isinstance(handled_ttl, int | float) or not handled_ttl > 0:
            raise ConfigError(f"handled_ttl must be a number of seconds > 0, got {handled_ttl!r}")
        self.store = store
        self.table = check_table(table)
        self.timeout_topic = timeout_topic
        # How long a handled event id is remembered: a redelivery within it is
        # skipped, the ids then go (the table would otherwise grow forever).
        self._handled = HandledIds(self._ref, float(handled_ttl))
        self.outbox = Outbox(store, table=outbox_table, source=source)
        self.sagas = {s.name: s for s in sagas}
        if len(self.sagas) != len(sagas):
            raise ConfigError("two sagas have the same name; give each its own")
        self._routes: dict[str, list[Route]] = {}
        for saga in sagas:
            for event_type, route in saga.routes.items():
                self._routes.setdefault(event_type, []).append(route)

    @property
    def handled_ttl(self) -> float:
        """Seconds a handled event id is remembered (the `handled_ttl` argument)."""
        return self._handled.ttl

    @property
    def event_types(self) -> list[str]:
        """The event types some saga handles (besides its timeouts)."""
        return sorted(self._routes)

    async def setup(self) -> None:
        """Create the saga and outbox tables. Idempotent."""
        await self.outbox.setup()
        await run_ddl(self.store, self.table, self._schema)

    def _schema(self, backend: str) -> list[str]:
        ref, real = self._ref(backend), "DOUBLE PRECISION" if backend == "postgres" else "REAL"
        return [
            f"""CREATE TABLE IF NOT EXISTS {ref} (
                saga TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, meta TEXT NOT NULL,
                status TEXT NOT NULL, version INTEGER NOT NULL,
                created_at {real} NOT NULL, updated_at {real} NOT NULL,
                PRIMARY KEY (saga, id))""",
            f"CREATE INDEX IF NOT EXISTS {self.table}_status ON {ref} (saga, status)",
            *handled_schema(ref, self.table, real),
        ]

    def _ref(self, backend: str) -> str:
        return table_ref(self.store, backend, self.table)

    # -- handling ------------------------------------------------------------
    async def handle(self, envelope: Envelope) -> HandleResult:
        """Handle one event (or timeout message) for every saga that takes it.

        Raises SagaNotFound for an event that does not start a saga and names
        an id never started, DecodeError for a payload that does not decode
        (poison: dead-letter it), and any error the handler raises; then
        nothing was saved or sent, and a redelivery tries again.
        """
        if not isinstance(envelope, Envelope):
            raise ConfigError(
                f"handle takes the Envelope of an event (annotate the subscriber's parameter "
                f"as Envelope), got {type(envelope).__name__}"
            )
        if envelope.type == TIMEOUT_TYPE:
            return await self._handle_timeout(envelope)
        routes = self._routes.get(envelope.type)
        if not routes:
            return HandleResult.IGNORED
        work = []
        for route in routes:
            event = route.decoder.decode(envelope)
            work.append((route, event, self._saga_id(route, event, envelope)))
        results = []
        async with self.outbox.transaction() as tx:
            for route, event, saga_id in work:
                results.append(await self._apply(tx, route, event, saga_id, envelope))
        return HandleResult.HANDLED if HandleResult.HANDLED in results else results[0]

    def _saga_id(self, route: Route, event: Any, envelope: Envelope) -> str:
        saga_id = route.id_of(event) if route.id_of is not None else envelope.subject
        if not isinstance(saga_id, str) or not saga_id:
            how = "its id= function returned" if route.id_of else "the envelope's subject is"
            raise SagaError(
                f"saga {route.saga.name!r} cannot tell which saga {envelope.type} (id "
                f"{envelope.id}) belongs to: {how} {saga_id!r}; give the handler id=lambda e: ..."
            )
        return saga_id

    async def _apply(
        self, tx: StoreTransaction, route: Route, event: Any, saga_id: str, envelope: Envelope
    ) -> HandleResult:
        saga, now = route.saga, time.time()
        if route.starts:
            await tx.execute(
                sql_for(tx.backend,
                        f"INSERT INTO {self._ref(tx.backend)} (saga, id, state, meta, status, version,"
                        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)"
                        " ON CONFLICT (saga, id) DO NOTHING"),
                saga.name, saga_id, json_codec.encode(saga.state_type()).decode(),
                _meta_encode(Meta()).decode(), SagaStatus.ACTIVE.value, now, now,
            )
        ctx = await self._load(tx, saga, saga_id, now, envelope)
        if ctx is None:
            raise SagaNotFound(
                f"no {saga.name!r} saga has id {saga_id!r}: {envelope.type} (event {envelope.id}) "
                "moves on a saga that was never started; check the id, or start the saga first"
            )
        if await self._handled.seen(tx, saga.name, saga_id, envelope.id):
            return HandleResult.DUPLICATE
        await call(route.handler, event, ctx)
        await self._save(tx, ctx, envelope.id)
        return HandleResult.HANDLED

    async def _handle_timeout(self, envelope: Envelope) -> HandleResult:
        try:
            timeout = _timeout_decode(envelope.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"not a saga timeout message: {exc}", kind="schema") from exc
        saga = self.sagas.get(timeout.saga)
        if saga is None:
            raise SagaError(
                f"timeout {timeout.name!r} is for saga {timeout.saga!r}, which this manager does not "
                f"run (it runs {', '.join(sorted(self.sagas))}); subscribe the right manager"
            )
        async with self.outbox.transaction() as tx:
            ctx = await self._load(tx, saga, timeout.id, time.time(), None)
            if ctx is None:
                raise SagaNotFound(f"timeout {timeout.name!r} names {timeout.saga!r} saga "
                                   f"{timeout.id!r}, which does not exist")
            if await self._handled.seen(tx, saga.name, timeout.id, envelope.id):
                return HandleResult.DUPLICATE
            armed = ctx.meta.timeouts.get(timeout.name)
            if ctx.finished or armed is None or armed[0] != timeout.token:
                await self._handled.record(tx, saga.name, timeout.id, envelope.id, ctx.now)
                return HandleResult.IGNORED  # finished, cancelled or armed again since
            del ctx.meta.timeouts[timeout.name]
            ctx.envelope = envelope
            await call(saga.timeouts[timeout.name], ctx)
            await self._save(tx, ctx, envelope.id)
        return HandleResult.HANDLED

    # -- rows ----------------------------------------------------------------
    async def _load(
        self, tx: StoreTransaction, saga: Saga[Any], saga_id: str, now: float, envelope: Envelope | None
    ) -> SagaContext[Any] | None:
        lock = " FOR UPDATE" if tx.backend == "postgres" else ""
        row = await tx.fetchone(
            sql_for(tx.backend, f"SELECT state, meta, status, version FROM {self._ref(tx.backend)}"
                                f" WHERE saga = ? AND id = ?{lock}"),
            saga.name, saga_id,
        )
        if row is None:
            return None
        state, meta, status, version = row
        try:
            decoded = json_codec.decode(str(state).encode(), saga.state_type)
            extra = _meta_decode(str(meta).encode())
            current = SagaStatus(status)
        except (DecodeError, msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise SagaError(
                f"the stored state of {saga.name!r} saga {saga_id!r} does not fit "
                f"{saga.state_type.__name__}: {exc}; migrate the row or fix the state class"
            ) from exc
        return SagaContext(saga, saga_id, decoded, current, int(version), envelope, tx, extra, now)

    async def prune(self) -> int:
        """Forget handled event ids older than `handled_ttl` (also done every
        PRUNE_EVERY handled events); returns how many went. A scheduler job can
        call it when the process handles few events."""
        async with self.store.transaction() as tx:
            return await self._handled.prune(tx, time.time())

    async def _save(self, tx: StoreTransaction, ctx: SagaContext[Any], event_id: str) -> None:
        saga = ctx.saga
        try:
            state = json_codec.encode(ctx.state).decode()
        except ConfigError as exc:
            raise SagaError(f"saga {saga.name!r}: the handler left a state that is not JSON: {exc}") from exc
        saved = await tx.fetchone(
            sql_for(tx.backend,
                    f"UPDATE {self._ref(tx.backend)} SET state = ?, meta = ?, status = ?,"
                    " version = version + 1, updated_at = ? WHERE saga = ? AND id = ? AND version = ?"
                    " RETURNING version"),
            state, _meta_encode(ctx.meta).decode(), ctx.status.value, ctx.now, saga.name, ctx.id,
            ctx.version,
        )
        if saved is None:  # only without the row lock, i.e. never on our backends
            raise SagaError(f"{saga.name!r} saga {ctx.id!r} changed while handling {event_id}: retry")
        await self._handled.record(tx, saga.name, ctx.id, event_id, ctx.now)
        parent = ctx.envelope
        for n, out in enumerate(ctx.outgoing):
            message_id = str(uuid.uuid5(_IDS, f"{saga.name}:{ctx.id}:{event_id}:{n}"))
            envelope = self._envelope(out.message, parent, message_id, ctx.id)
            await self.outbox.add(tx, out.topic, envelope, key=out.key, deliver_at=out.deliver_at)
        for name, (token, due) in ctx.new_timeouts.items():
            body = json_codec.encode(Timeout(saga.name, ctx.id, name, token))
            envelope = self._raw_envelope(TIMEOUT_TYPE, body, None, parent, str(uuid.uuid4()), ctx.id)
            await self.outbox.add(tx, self.timeout_topic, envelope, key=ctx.id, deliver_at=due)

    def _envelope(self, message: Any, parent: Envelope | None, message_id: str, subject: str) -> Envelope:
        if isinstance(message, Envelope):
            return message
        if isinstance(message, Command):
            return self._raw_envelope(message.type, bytes(message.data), message.version, parent,
                                      message_id, subject)
        made = envelope_of(message, self._source, parent=parent, id=message_id)
        return made if made.subject else msgspec.structs.replace(made, subject=subject)

    def _raw_envelope(
        self, event_type: str, data: bytes, version: int | None, parent: Envelope | None,
        message_id: str, subject: str,
    ) -> Envelope:
        correlation = (parent.correlationid or parent.id) if parent else message_id
        return Envelope(
            id=message_id, source=self._source, type=event_type, data=data, time=utc_now_iso(),
            subject=subject, datacontenttype=JSON, dataversion=version, correlationid=correlation,
            causationid=parent.id if parent else None, traceparent=parent.traceparent if parent else None,
        )

    @property
    def _source(self) -> str:
        return self.outbox.source or "herald"

    # -- reading -------------------------------------------------------------
    async def get(self, saga: Saga[S], saga_id: str) -> SagaRecord[S]:
        """The stored saga; SagaNotFound if there is none."""
        if not isinstance(saga, Saga) or saga.name not in self.sagas:
            raise ConfigError(f"get takes one of this manager's Saga definitions, got {saga!r}")
        if not isinstance(saga_id, str) or not saga_id:
            raise ConfigError(f"saga id must be a non-empty string, got {saga_id!r}")
        async with self.store.transaction() as tx:
            ctx = await self._load(tx, saga, saga_id, 0.0, None)
            row = await tx.fetchone(
                sql_for(tx.backend, f"SELECT created_at, updated_at FROM {self._ref(tx.backend)}"
                                    " WHERE saga = ? AND id = ?"),
                saga.name, saga_id,
            )
        if ctx is None or row is None:
            raise SagaNotFound(f"no {saga.name!r} saga has id {saga_id!r}")
        return SagaRecord(
            saga.name, saga_id, ctx.state, ctx.status, ctx.version,
            {name: due for name, (_, due) in ctx.meta.timeouts.items()}, ctx.meta.reason,
            float(row[0]), float(row[1]),
        )

    async def counts(self, saga: Saga[Any]) -> dict[str, int]:
        """How many sagas of this kind are in each status."""
        async with self.store.transaction() as tx:
            rows = await tx.fetch(
                sql_for(tx.backend, f"SELECT status, COUNT(*) FROM {self._ref(tx.backend)}"
                                    " WHERE saga = ? GROUP BY status"),
                saga.name,
            )
        return {str(status): int(n) for status, n in rows}


"""Event-sourced aggregates on both stores: replay, rules, optimistic
concurrency, snapshots and upcasting. The Todo is the example's (seed 002)."""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import msgspec
import pytest
from examples.todo.aggregate import Todo, TodoError
from examples.todo.events import TodoCreated

from herald import ConfigError, Envelope, Event
from herald.store import ConcurrencyError, CorruptEvent, EventStore, ExpectedVersion
from herald.store.aggregate import Aggregate, AggregateNotFound, applies
from herald.store.repository import Repository
from herald.store.snapshot import SnapshotUpcasters
from herald.upcasting import Upcasters


def todos(store: EventStore, **options: Any) -> Repository[Todo]:
    return Repository(store, Todo, **options)


async def snapshot_row(store: EventStore, repo: Repository[Any], stream: str) -> tuple[Any, ...] | None:
    async with store.transaction() as tx:
        sql = f"SELECT version, schema_version, state FROM {repo.snapshots.table} WHERE stream = "
        return await tx.fetchone(sql + ("?" if tx.backend == "sqlite" else "$1"), stream)


async def set_snapshot(store: EventStore, repo: Repository[Any], stream: str, schema_version: int,
                       state: dict[str, Any]) -> None:
    async with store.transaction() as tx:
        sql = f"UPDATE {repo.snapshots.table} SET schema_version = ?, state = ? WHERE stream = ?"
        if tx.backend == "postgres":
            sql = sql.replace("= ?", "= $1", 1).replace("= ?", "= $2", 1).replace("= ?", "= $3", 1)
        await tx.execute(sql, schema_version, msgspec.json.encode(state), stream)


# -- replay and rules -----------------------------------------------------------------
async def test_a_todo_is_rebuilt_from_its_events(store: EventStore) -> None:
    repo = todos(store)
    todo = Todo.create("t1", user_id=7, title=" buy milk ", priority=2)
    assert await repo.save(todo) == 1
    assert todo.pending_events == [] and todo.version == 1

    loaded = await repo.load("t1")
    loaded.change_priority(5)
    loaded.complete()
    assert loaded.version == 3 and loaded.committed_version == 1
    assert await repo.save(loaded) == 3

    again = await repo.load("t1")
    assert (again.user_id, again.title, again.priority, again.done, again.deleted) == (
        7, "buy milk", 5, True, False)
    assert again.version == 3
    stored = await store.read_stream("todo-t1")
    assert [e.type for e in stored] == ["todo.created", "todo.priority_changed", "todo.completed"]
    first = stored[0].envelope
    assert (first.subject, first.aggregatetype, first.source, first.dataversion) == (
        "t1", "todo", "todo", 1)


async def test_the_rules_of_a_todo_hold_after_a_reload(store: EventStore) -> None:
    repo = todos(store)
    await repo.save(Todo.create("t1", user_id=1, title="x"))
    todo = await repo.load("t1")
    todo.delete()
    await repo.save(todo)
    deleted = await repo.load("t1")
    with pytest.raises(TodoError, match="cannot complete todo 't1': it was deleted"):
        deleted.complete()
    with pytest.raises(TodoError, match="cannot delete todo 't1': it was deleted"):
        deleted.delete()
    with pytest.raises(TodoError, match="cannot change the priority"):
        deleted.change_priority(3)
    assert deleted.pending_events == [] and deleted.version == 2  # a broken rule changes nothing

    await repo.save(Todo.create("t2", user_id=1, title="y"))
    done = await repo.load("t2")
    done.complete()
    with pytest.raises(TodoError, match="already completed"):
        done.complete()
    done.change_priority(1)  # unchanged: no event
    assert len(done.pending_events) == 1
    for bad in (0, 6, "3", 2.5, True):
        with pytest.raises(TodoError, match="priority must be an integer from 1 to 5"):
            done.change_priority(bad)  # type: ignore[arg-type]
    with pytest.raises(TodoError, match="needs a title"):
        Todo.create("t3", user_id=1, title="  ")
    with pytest.raises(TodoError, match="user_id must be an integer"):
        Todo.create("t3", user_id="7", title="x")  # type: ignore[arg-type]


async def test_an_unknown_id_is_a_clear_error(store: EventStore) -> None:
    repo = todos(store)
    with pytest.raises(AggregateNotFound, match="no Todo 'nope': stream 'todo-nope' has no events"):
        await repo.load("nope")
    assert not await repo.exists("nope")
    with pytest.raises(LookupError):  # AggregateNotFound is a LookupError too
        await repo.load("nope")


# -- optimistic concurrency -----------------------------------------------------------
async def test_two_repositories_racing_one_wins_the_other_reloads(store: EventStore) -> None:
    first, second = todos(store), todos(store)
    await first.save(Todo.create("t1", user_id=1, title="x"))
    a, b = await first.load("t1"), await second.load("t1")
    a.change_priority(3)
    b.complete()
    await first.save(a)
    with pytest.raises(ConcurrencyError, match="is at version 2, the append expected version 1"):
        await second.save(b)
    assert len(b.pending_events) == 1  # kept: the caller decides what to do with them

    b = await second.load("t1")
    b.complete()
    assert await second.save(b) == 3
    final = await first.load("t1")
    assert (final.priority, final.done) == (3, True)


async def test_creating_the_same_id_twice_conflicts(store: EventStore) -> None:
    repo = todos(store)
    await repo.save(Todo.create("t1", user_id=1, title="x"))
    with pytest.raises(ConcurrencyError, match="expected no stream"):
        await repo.save(Todo.create("t1", user_id=2, title="y"))


async def test_eight_concurrent_savers_exactly_one_wins(store: EventStore) -> None:
    repo = todos(store)
    await repo.save(Todo.create("t1", user_id=1, title="x"))
    loaded = [await repo.load("t1") for _ in range(8)]
    for n, todo in enumerate(loaded):
        todo.change_priority(2 + n % 4)
    results = await asyncio.gather(*(repo.save(t) for t in loaded), return_exceptions=True)
    assert sum(r == 2 for r in results) == 1, results
    assert all(isinstance(r, ConcurrencyError) for r in results if r != 2)
    assert (await repo.load("t1")).version == 2


async def test_update_reloads_and_retries_on_conflict(store: EventStore) -> None:
    repo = todos(store)
    await repo.save(Todo.create("t1", user_id=1, title="x"))
    priorities = [2, 3, 4, 5, 1, 2, 3, 4]

    async def bump(priority: int) -> None:
        async def command(todo: Todo) -> None:
            await asyncio.sleep(0)  # let the others load the same version
            todo.change_priority(priority)
        await repo.update("t1", command, attempts=20)

    await asyncio.gather(*(bump(p) for p in priorities))
    stored = await store.read_stream("todo-t1")
    assert [e.version for e in stored] == list(range(1, len(stored) + 1))
    assert len(stored) >= 2
    with pytest.raises(ConfigError, match="attempts must be an integer >= 1"):
        await repo.update("t1", lambda t: None, attempts=0)


async def test_a_retried_save_after_a_lost_reply_appends_nothing(store: EventStore) -> None:
    repo = todos(store)
    todo = Todo.create("t1", user_id=1, title="x")
    retry = copy.deepcopy(todo)  # the same pending events, the same ids
    assert await repo.save(todo) == 1
    assert await repo.save(retry) == 1
    assert len(await store.read_stream("todo-t1")) == 1


async def test_caused_by_links_correlation_and_causation(store: EventStore) -> None:
    repo = todos(store)
    cause = Envelope(id="cause-1", source="web", type="todo.requested", correlationid="corr-9")
    await repo.save(Todo.create("t1", user_id=1, title="x"), caused_by=cause, metadata={"user": "7"})
    (stored,) = await store.read_stream("todo-t1")
    assert (stored.envelope.correlationid, stored.envelope.causationid) == ("corr-9", "cause-1")
    assert stored.metadata == {"user": "7"}


class TallyAdded(Event, type="agg_test.tally_added", version=2, subject="tally_id"):
    tally_id: str
    amount: int
    note: str = ""


class Tally(Aggregate, type="tally", snapshot_version=2):
    total: int = 0
    label: str = ""

    def add(self, amount: int) -> None:
        self.trigger(TallyAdded(tally_id=self.id, amount=amount))

    @applies(TallyAdded)
    def _added(self, event: TallyAdded) -> None:
        self.total += event.amount



# -- snapshots ------------------------------------------------------------------------
async def test_a_snapshot_every_n_events_and_a_load_from_snapshot_plus_tail(store: EventStore) -> None:
    repo = todos(store, snapshot_every=3)
    todo = Todo.create("t1", user_id=1, title="x")
    await repo.save(todo)  # version 1: no snapshot
    assert await snapshot_row(store, repo, "todo-t1") is None
    for priority in (2, 3, 4, 5):  # versions 2..5: one snapshot at 3
        todo.change_priority(priority)
        await repo.save(todo)
    row = await snapshot_row(store, repo, "todo-t1")
    assert row is not None and (row[0], row[1]) == (3, 1)
    assert msgspec.json.decode(bytes(row[2]))["priority"] == 3

    # Prove the load starts from the snapshot: change what it says, keep the events.
    await set_snapshot(store, repo, "todo-t1", 1, {"user_id": 1, "title": "from the snapshot",
                                                   "priority": 3, "done": False, "deleted": False})
    loaded = await repo.load("t1")
    assert (loaded.title, loaded.priority, loaded.version) == ("from the snapshot", 5, 5)

    todo.complete()  # 6: a save that crosses 6 writes a new snapshot in the same transaction
    await repo.save(todo)
    row = await snapshot_row(store, repo, "todo-t1")
    assert row is not None and row[0] == 6
    assert (await repo.load("t1")).done is True


async def test_a_save_that_jumps_past_a_multiple_snapshots_once(store: EventStore) -> None:
    repo = todos(store, snapshot_every=2)
    todo = Todo.create("t1", user_id=1, title="x")
    todo.change_priority(2)
    todo.change_priority(3)  # three events in one save: crosses 2
    await repo.save(todo)
    row = await snapshot_row(store, repo, "todo-t1")
    assert row is not None and row[0] == 3


async def test_an_old_snapshot_is_upcast_and_one_without_upcaster_is_replayed(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    upcasters = SnapshotUpcasters()
    repo = Repository(store, Tally, snapshot_every=2, snapshot_upcasters=upcasters)
    tally = Tally("c1")
    for amount in (5, 6, 7):
        tally.add(amount)
    await repo.save(tally)  # snapshot at 3: {"total": 18, "label": ""}, schema 2
    await set_snapshot(store, repo, "tally-c1", 1, {"sum": 100})  # as version 1 code wrote it

    with caplog.at_level(logging.WARNING, logger="herald.store.repository"):
        replayed = await repo.load("c1")  # no upcaster from 1: replay all events
    assert (replayed.total, replayed.version) == (18, 3)
    assert "no snapshot upcaster for 'tally' from version 1" in caplog.text

    @upcasters.register("tally", from_version=1)
    def rename(state: dict[str, Any]) -> dict[str, Any]:
        return {"total": state["sum"], "label": "upcast"}

    upcast = await repo.load("c1")
    assert (upcast.total, upcast.label, upcast.version) == (100, "upcast", 3)

    await set_snapshot(store, repo, "tally-c1", 9, {"total": 1})  # written by newer code
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="herald.store.repository"):
        newer = await repo.load("c1")
    assert newer.total == 18 and "newer than this code's 2" in caplog.text

    await set_snapshot(store, repo, "tally-c1", 2, {"total": "many"})  # no longer fits the state
    assert (await repo.load("c1")).total == 18


# -- event upcasting and bad events ------------------------------------------------------
def v1_envelope(event_id: str, value: int) -> Envelope:
    """A version 1 tally_added as older code stored it: `value`, not `amount`."""
    return Envelope(id=event_id, source="old", type="agg_test.tally_added", subject="c1",
                    datacontenttype="application/json", dataversion=1,
                    data=msgspec.json.encode({"tally_id": "c1", "value": value}))


async def test_old_events_are_upcast_on_load(store: EventStore) -> None:
    upcasters = Upcasters()

    @upcasters.register("agg_test.tally_added", from_version=1)
    def value_to_amount(payload: dict[str, Any]) -> dict[str, Any]:
        payload["amount"] = payload.pop("value")
        return payload

    await store.append("tally-c1", [v1_envelope("e1", 4), v1_envelope("e2", 6)],
                       ExpectedVersion.NO_STREAM)
    repo = Repository(store, Tally, upcasters=upcasters)
    tally = await repo.load("c1")
    assert (tally.total, tally.version) == (10, 2)
    tally.add(1)
    await repo.save(tally)  # the new event is written at version 2 of its schema
    assert (await store.read_stream("tally-c1"))[-1].envelope.dataversion == 2

    with pytest.raises(CorruptEvent, match=r"no upcaster for agg_test.tally_added from version 1"):
        await Repository(store, Tally, upcasters=Upcasters()).load("c1")


async def test_an_unknown_event_type_in_a_stream_is_a_clear_error(store: EventStore) -> None:
    repo = todos(store)
    await repo.save(Todo.create("t1", user_id=1, title="x"))
    stranger = Envelope(id="odd-1", source="elsewhere", type="nobody.knows", data=b"{}",
                        datacontenttype="application/json")
    await store.append("todo-t1", [stranger], 1)
    with pytest.raises(CorruptEvent) as caught:
        await repo.load("t1")
    message = str(caught.value)
    assert "stream 'todo-t1' version 2" in message
    assert "event type 'nobody.knows', which Todo does not apply" in message
    assert "todo.created" in message and "add an @applies method" in message


async def test_a_payload_that_does_not_fit_is_a_clear_error(store: EventStore) -> None:
    bad = Envelope(id="bad-1", source="x", type="todo.created", data=b'{"todo_id": 5}',
                   datacontenttype="application/json", dataversion=1)
    await store.append("todo-t9", [bad], ExpectedVersion.NO_STREAM)
    with pytest.raises(CorruptEvent, match=r"stream 'todo-t9' version 1 .*cannot be decoded: "
                                           r"payload does not match TodoCreated"):
        await todos(store).load("t9")


async def test_an_apply_method_that_fails_names_the_event(store: EventStore) -> None:
    class Fragile(Aggregate, type="fragile"):
        @applies(TodoCreated)
        def _created(self, event: TodoCreated) -> None:
            raise RuntimeError("boom")

    envelope = Envelope(id="f-1", source="x", type="todo.created", datacontenttype="application/json",
                        data=msgspec.json.encode(TodoCreated(todo_id="f", user_id=1, title="t")))
    await store.append("fragile-f", [envelope], ExpectedVersion.NO_STREAM)
    with pytest.raises(RuntimeError, match="boom") as caught:
        await Repository(store, Fragile).load("f")
    assert "while replaying 'fragile-f' version 1 (todo.created)" in caught.value.__notes__


# -- garbage in -------------------------------------------------------------------------
async def test_garbage_arguments_are_clear_errors(store: EventStore) -> None:
    with pytest.raises(ConfigError, match="needs an EventStore, got str"):
        Repository("sqlite:///x.db", Todo)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs an Aggregate subclass"):
        Repository(store, object)  # type: ignore[type-var]
    for every in (0, -1, "3", 2.5, True):
        with pytest.raises(ConfigError, match="snapshot_every must be an integer >= 1"):
            Repository(store, Todo, snapshot_every=every)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="snapshot table must be a SQL name"):
        Repository(store, Todo, snapshot_every=2, snapshots="x; DROP TABLE y")
    with pytest.raises(ConfigError, match="snapshots must be a table name or a SnapshotTable"):
        Repository(store, Todo, snapshots=42)  # type: ignore[arg-type]

    class Stateless(Aggregate):
        @applies(TodoCreated)
        def _created(self, event: TodoCreated) -> None:
            pass

    with pytest.raises(ConfigError, match="Stateless declares no state to snapshot"):
        Repository(store, Stateless, snapshot_every=5)

    class NoAppliers(Aggregate):
        pass

    with pytest.raises(ConfigError, match="NoAppliers has no @applies methods"):
        Repository(store, NoAppliers)

    repo = todos(store)
    for bad_id in ("", 5, None):
        with pytest.raises(ConfigError, match="Todo id must be a non-empty string"):
            await repo.load(bad_id)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="this repository saves Todo, got Tally"):
        await repo.save(Tally("c1"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Todo id must be a non-empty string"):
        Todo("")
    with pytest.raises(ConfigError, match=r"Todo has no @applies\(TallyAdded\) method"):
        Todo("t1").trigger(TallyAdded(tally_id="c", amount=1))


def test_bad_aggregate_classes_fail_when_defined() -> None:
    with pytest.raises(ConfigError, match="@applies takes herald Event classes"):
        applies(int)
    with pytest.raises(ConfigError, match="@applies needs at least one event class"):
        applies()
    with pytest.raises(ConfigError, match="a mutable class default would be shared"):
        class Shared(Aggregate):
            tags: list[str] = []
    with pytest.raises(ConfigError, match="type must be letters"):
        class Spaced(Aggregate, type="has space"):
            pass
    with pytest.raises(ConfigError, match="snapshot_version must be an integer >= 1"):
        class Zero(Aggregate, snapshot_version=0):
            pass
    with pytest.raises(ConfigError, match="from_version must be an integer >= 1, got 0"):
        SnapshotUpcasters().register("todo", from_version=0)


async def test_save_queues_the_events_in_the_outbox_in_the_same_transaction(store: EventStore) -> None:
    from herald.brokers.memory import MemoryBroker
    from herald.store import Outbox, OutboxRelay

    outbox = Outbox(store, source="todo")
    await outbox.setup()
    repo = todos(store)
    todo = Todo.create("t-out", user_id=1, title="post the letter")
    await repo.save(todo, outbox=outbox, topic="todo-events")
    assert (await outbox.status()).pending == 1

    # A save that loses the race stores nothing and queues nothing.
    first, second = await repo.load("t-out"), await repo.load("t-out")
    first.complete()
    await repo.save(first, outbox=outbox, topic="todo-events")
    second.delete()
    with pytest.raises(ConcurrencyError):
        await repo.save(second, outbox=outbox, topic="todo-events")
    assert (await outbox.status()).pending == 2

    broker = MemoryBroker()
    await broker.connect()
    relay = OutboxRelay(store, broker, poll_interval=0.05)
    await relay.start()
    try:
        for _ in range(200):
            if (await outbox.status()).pending == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        await relay.stop()
    records = await broker.read_topic("todo-events")
    assert [r.headers["ce_type"] for r in records] == ["todo.created", "todo.completed"]
    assert {r.key for r in records} == {"t-out"}
    await broker.close()


async def test_save_wants_outbox_and_topic_together(store: EventStore) -> None:
    from herald.store import Outbox

    todo = Todo.create("t-half", user_id=1, title="x")
    with pytest.raises(ConfigError, match="together"):
        await todos(store).save(todo, outbox=Outbox(store), topic=None)
    with pytest.raises(ConfigError, match="together"):
        await todos(store).save(todo, topic="todo-events")

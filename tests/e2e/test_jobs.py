"""The jobs flow end to end (seed 003, J1-J3): scheduled jobs (interval and
cron) send user-sync events keyed by user (Protobuf) and order-notify events
(JSON) through typed senders, plus one delayed send; the consumers of both
topics count what arrived. Through the HTTP API, on the embedded default
(SQLite broker) and on Kafka.

Kafka must be running: the test fails, never skips, without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from examples.jobs.api import create_api
from examples.jobs.events import USER_TOPIC, UserSyncReq
from examples.jobs.service import JobsService, build
from examples.jobs.workload import HttpJobs, check, drive, summary

from herald import App, Context, Tick
from tests.e2e._services import KAFKA, kafka_namespace, serving


@pytest.fixture(params=["sqlite", "kafka"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'herald.db'}"
        return
    with kafka_namespace() as namespace:
        yield f"kafka://{KAFKA}?namespace={namespace}"


@contextlib.asynccontextmanager
async def running(broker: str) -> AsyncIterator[tuple[JobsService, HttpJobs]]:
    service = build(App("jobs", broker=broker))
    async with serving(create_api(service, run_app=True), "jobs") as client:
        yield service, HttpJobs(client)


async def test_j1_j2_j3_jobs_flow_end_to_end(broker: str) -> None:
    async with running(broker) as (service, http):
        steps: list[int] = []
        expected = await drive(http, random.Random(3), lambda done, total: steps.append(done),
                               direct=12, delay=1.5)
        assert steps[-1] == 12 + 4
        assert not service.scheduler.running
        problems = await check(http, expected, timeout=90)
        assert problems == []
        ledger = service.ledger
        assert ledger.delayed == 1 and ledger.order_violations == 0
        assert len(ledger.sent[USER_TOPIC]) >= 2 * 3 + 1  # two scheduled runs, three users each
        lines = summary(http)
        assert lines[0].startswith("jobs: sent") and any("cron * * * * * */2" in line for line in lines)
        jobs = {job["name"]: job for job in (await http.client.get("/jobs")).json()}
        assert jobs["sync_users"]["schedule"] == "every 1s"
        assert jobs["notify_orders"]["runs"] >= 3


async def test_j2_a_rerun_of_the_same_tick_sends_the_same_ids_and_counts_once(tmp_path: Path) -> None:
    service = build(App("jobs", broker=f"sqlite:///{tmp_path / 'herald.db'}"))
    tick = Tick("sync_users", datetime(2024, 5, 1, tzinfo=UTC))
    async with service.app:
        await service.scheduler.stop()  # only the runs below
        service._next_user = 0
        await service.sync_users(tick)
        service._next_user = 0  # the same users again, as another process would pick them
        await service.sync_users(tick)
        for _ in range(200):
            if len(service.ledger.received[USER_TOPIC]) >= 3:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        stats = service.app.stats()
    assert len(service.ledger.sent[USER_TOPIC]) == 3
    assert len(service.ledger.received[USER_TOPIC]) == 3
    assert service.ledger.deliveries[USER_TOPIC] == 3  # the copies were skipped by dedup
    skipped = sum(c["skipped"] for name, c in stats.items() if name.startswith("user-sync"))
    assert skipped == 3
    assert sorted(service.ledger.sent[USER_TOPIC])[0].startswith(
        "sync_users:tick:2024-05-01T00:00:00+00:00:user:")


async def test_j2_user_sync_travels_as_protobuf_keyed_by_user() -> None:
    app = App("jobs", broker="memory://")
    service = build(app)
    got: list[tuple[str | None, str]] = []

    @app.subscriber(USER_TOPIC, group="wire-check")
    async def raw(event: UserSyncReq, ctx: Context) -> None:
        assert ctx.envelope.datacontenttype == "application/protobuf"
        got.append((ctx.key, event.message_id))

    async with app:
        await service.scheduler.stop()
        message_id = await service.users.send_sync(42, "sync")
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
    assert got == [("user:42", message_id)]


async def test_jobs_api_answers_garbage_with_a_clear_4xx() -> None:
    async with running("memory://") as (service, http):
        await service.scheduler.stop()
        client = http.client
        bad = [
            ("POST", "/jobs/nope/run", b"", 404, "no job named 'nope'"),
            ("POST", "/users/abc/sync", b"{}", 422, "user id"),
            ("POST", "/users/0/sync", b"{}", 422, "user id"),
            ("POST", "/users/1/sync", b"{oops", 400, "not JSON"),
            ("POST", "/users/1/sync", b'"sync"', 422, "JSON object"),
            ("POST", "/users/1/sync", b'{"action": 5}', 422, "action"),
            ("POST", "/users/1/sync", b'{"action": ""}', 422, "action"),
            ("POST", "/users/1/sync", b'{"delay": "soon"}', 422, "delay"),
            ("POST", "/users/1/sync", b'{"delay": -1}', 422, "delay"),
            ("POST", "/users/1/sync", b'{"delay": 1e9}', 422, "delay"),
            ("POST", "/users/1/sync", b'{"delay": true}', 422, "delay"),
            ("POST", "/orders/1/notify", b'{"message": "hi"}', 422, "missing field \"user_id\""),
            ("POST", "/orders/1/notify", b'{"user_id": "7", "message": "hi"}', 422, "user_id"),
            ("POST", "/orders/1/notify", b'{"user_id": 7}', 422, "missing field \"message\""),
            ("POST", "/orders/x/notify", b'{"user_id": 7, "message": "hi"}', 422, "order id"),
            ("POST", "/orders/1/notify", b"", 400, "not JSON"),
        ]
        for method, path, body, status, words in bad:
            answer = await client.request(method, path, content=body)
            assert answer.status_code == status, (method, path, body, answer.text)
            assert words in answer.json()["error"], (path, answer.json())
        assert (await client.get("/jobs/sync_users/run")).status_code == 405
        assert (await client.post("/users/1/sync", json={"delay": 0.1})).status_code == 202
        answer = await client.post("/jobs/sync_users/run")
        assert answer.status_code == 200 and answer.json()["ok"] is True
        assert (await client.post("/scheduler/stop")).json() == {"running": False}

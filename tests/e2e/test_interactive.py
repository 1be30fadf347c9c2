"""The interactive flow end to end through its HTTP API: reads published,
counted in batches, likes and collects per user, counters through the cache;
then the demo's own check. On the embedded default (SQLite broker, SQLite
tables, memory cache) and on Kafka with PostgreSQL and Redis.

Kafka, PostgreSQL and Redis must be running: the test fails, never skips,
without them (`bash scripts/services.sh up kafka postgresql redis`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from examples.interactive.api import create_api
from examples.interactive.cache import open_cache
from examples.interactive.service import InteractiveService, InteractiveSettings, build
from examples.interactive.storage import open_storage
from examples.interactive.workload import HttpInteractive, check, drive, summary

from herald import App, Batch
from tests.e2e._services import (
    KAFKA,
    POSTGRES_DSN,
    REDIS_URL,
    drop,
    kafka_namespace,
    new_tag,
    require,
    serving,
)


@dataclass
class Deployment:
    broker: str
    storage: str
    cache: str


@pytest.fixture(params=["sqlite", "kafka-postgres-redis"])
async def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    if request.param == "sqlite":
        yield Deployment(f"sqlite:///{tmp_path / 'herald.db'}",
                         f"sqlite:///{tmp_path / 'interactive.db'}", "memory://")
        return
    require("postgresql", "redis")
    tag = new_tag()
    schema, prefix = f"interactive_{tag}", f"interactive{tag}:"
    try:
        with kafka_namespace() as namespace:
            yield Deployment(f"kafka://{KAFKA}?namespace={namespace}",
                             f"{POSTGRES_DSN}?schema={schema}", f"{REDIS_URL}?prefix={prefix}")
    finally:
        await drop(schemas=[schema], redis_prefix=prefix)


@contextlib.asynccontextmanager
async def running(deployment: Deployment) -> AsyncIterator[tuple[InteractiveService, HttpInteractive]]:
    app = App("interactive", broker=deployment.broker)
    settings = InteractiveSettings(batch=Batch(size=10, timeout=1.0))  # the seed's figures
    service = build(app, open_storage(deployment.storage), open_cache(deployment.cache), settings)
    async with serving(create_api(service, run_app=True), "interactive") as client:
        yield service, HttpInteractive(client)


async def test_interactive_flow_end_to_end(deployment: Deployment) -> None:
    async with running(deployment) as (service, http):
        progress: list[int] = []
        expected = await drive(http, random.Random(1), lambda done, total: progress.append(done),
                               articles=12, users=8, actions=240)
        assert progress[-1] == 240
        assert expected.duplicates > 0  # the workload did send duplicates
        problems = await check(http, expected, timeout=90)
        assert problems == []
        lines = summary(http)
        assert lines[0].startswith("interactive: ") and f"{expected.duplicates} repeats" in lines[0]
        assert summary(service)[0] == lines[0]
        assert service.figures.reads_counted == sum(expected.reads.values())
        # a retried HTTP request with the same event id counts once
        before = (await http.counters("article", 1)).read_cnt
        for _ in range(3):
            await http.read(1, 5, event_id="client-retry-1")
        one_more = before + 1
        for _ in range(300):
            if (await service.stored_counters("article", 1)).read_cnt >= one_more:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)
        assert (await service.stored_counters("article", 1)).read_cnt == one_more


async def test_interactive_api_answers_garbage_with_a_clear_4xx(tmp_path: Path) -> None:
    deployment = Deployment("memory://", f"sqlite:///{tmp_path / 'i.db'}", "memory://")
    async with running(deployment) as (_, http):
        client = http.client
        bad = [
            ("POST", "/articles/1/read", b"{not json", 400, "not JSON"),
            ("POST", "/articles/1/read", b"[1, 2]", 422, "JSON object"),
            ("POST", "/articles/1/read", b"{}", 422, "missing field"),
            ("POST", "/articles/1/read", b'{"uid": "7"}', 422, "uid"),
            ("POST", "/articles/1/read", b'{"uid": true}', 422, "uid"),
            ("POST", "/articles/1/read", b'{"uid": -3}', 422, "uid"),
            ("POST", "/articles/1/read", b'{"uid": 3, "event_id": 5}', 422, "event_id"),
            ("POST", "/articles/1/read", b'{"uid": 3, "event_id": "a b"}', 422, "event_id"),
            ("POST", "/articles/zero/read", b'{"uid": 3}', 422, "article id"),
            ("POST", "/articles/0/read", b'{"uid": 3}', 422, "article id"),
            ("POST", "/articles/99999999999999999999999/read", b'{"uid": 3}', 422, "article id"),
            ("POST", "/interactive/article/1/like", b"", 400, "not JSON"),
            ("POST", "/interactive/article/1/like", b'{"user": 1}', 422, "missing field"),
            ("POST", "/interactive/Article!/1/like", b'{"uid": 1}', 422, "biz"),
            ("POST", "/interactive/article/x/collect", b'{"uid": 1}', 422, "id"),
            ("POST", "/interactive/article/1/uncollect", b'{"uid": 1.5}', 422, "uid"),
            ("GET", "/interactive/article/424242", None, 404, "no counters"),
            ("GET", "/interactive/article/1?fresh=yes", None, 422, "fresh"),
            ("GET", "/interactive/article/1?uid=abc", None, 422, "uid"),
            ("GET", "/counters/Bad-Biz", None, 422, "biz"),
        ]
        for method, path, body, status, words in bad:
            answer = await client.request(method, path, content=body)
            assert answer.status_code == status, (method, path, body, answer.text)
            assert words in answer.json()["error"], (path, answer.json())
        assert (await client.post("/interactive/article/1/dislike", json={"uid": 1})).status_code == 404
        assert (await client.get("/articles/1/read")).status_code == 405
        # and the good path still answers
        assert (await client.post("/interactive/article/1/like", json={"uid": 1})).json() == {
            "changed": True}
        answer = await client.get("/interactive/article/1", params={"uid": 1})
        assert answer.json() == {"biz": "article", "biz_id": 1, "read_cnt": 0, "like_cnt": 1,
                                 "collect_cnt": 0, "liked": True, "collected": False}
        assert (await client.get("/stats")).status_code == 200

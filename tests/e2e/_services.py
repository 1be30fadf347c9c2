"""What the end-to-end tests share: the real services (Kafka, PostgreSQL,
Redis) and what a test makes there of its own (a Kafka namespace, a
PostgreSQL schema, a Redis key prefix), dropped afterwards; HTTP clients of
the examples' APIs in this process.

A test that needs a service fails, never skips, when it is not running, and
says how to start it (`bash scripts/services.sh up <name>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

POSTGRES_DSN = os.environ.get("HERALD_TEST_POSTGRES", "postgresql://herald:herald@127.0.0.1:5432/herald")
REDIS_URL = os.environ.get("HERALD_TEST_REDIS", "redis://127.0.0.1:6379/0")
KAFKA = "127.0.0.1:9092"
# name (as scripts/services.sh knows it): what to call it, its port on 127.0.0.1
SERVICES = {"kafka": ("Kafka", 9092), "postgresql": ("PostgreSQL", 5432), "redis": ("Redis", 6379)}


def require(*names: str) -> None:
    """Fail the test (never skip it) unless each of these services answers."""
    for name in names:
        title, port = SERVICES[name]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
        except OSError:
            pytest.fail(
                f"{title} is not running on 127.0.0.1:{port}: run `bash scripts/services.sh up {name}`"
            )


def new_tag() -> str:
    """A tag for the names one test makes of its own on the services."""
    return uuid.uuid4().hex[:10]


async def drop(
    *, schemas: Sequence[str] = (), redis_prefix: str | None = None, kafka_namespace: str | None = None
) -> None:
    """Drop what a test made: PostgreSQL schemas, Redis keys under a prefix,
    Kafka topics and consumer groups under a namespace."""
    if schemas:
        await drop_schemas(*schemas)
    if redis_prefix is not None:
        await drop_redis_keys(redis_prefix)
    if kafka_namespace is not None:
        await asyncio.to_thread(drop_kafka_namespace, kafka_namespace)


async def drop_schemas(*schemas: str) -> None:
    conn = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def drop_redis_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def drop_kafka_namespace(namespace: str) -> None:
    """Delete the topics and consumer groups whose names start with `namespace`."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": KAFKA})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(namespace)]
    for future in (admin.delete_topics(topics, request_timeout=15) if topics else {}).values():
        with contextlib.suppress(Exception):
            future.result(timeout=15)
    groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid
              if g.group_id.startswith(namespace)]
    for future in (admin.delete_consumer_groups(groups, request_timeout=15) if groups else {}).values():
        with contextlib.suppress(Exception):
            future.result(timeout=15)


@contextlib.contextmanager
def kafka_namespace() -> Iterator[str]:
    """A namespace of its own; its topics and groups are deleted afterwards."""
    require("kafka")
    namespace = f"e2e{new_tag()}."
    try:
        yield namespace
    finally:
        drop_kafka_namespace(namespace)


def asgi_client(app: Any, name: str) -> httpx.AsyncClient:
    """A client of `app` called in this process, at http://<name>."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}")


@contextlib.asynccontextmanager
async def serving(api: Any, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """`api` started as a server starts it (its lifespan), and a client of it."""
    async with api.router.lifespan_context(api), asgi_client(api, name) as client:
        yield client


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    """Wait for `predicate`; fail saying `what` did not catch up in time."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"{what} did not catch up in time"
        await asyncio.sleep(0.1)

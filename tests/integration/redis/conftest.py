"""Fixtures for the Redis adapter's own tests. They need the real server:
`bash scripts/services.sh up redis` (they fail, never skip, without it)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from herald.brokers.redis import RedisBroker, purge_namespace

SERVER = "redis://127.0.0.1:6379/0"


def require_server() -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        pytest.fail("Redis is not running on 127.0.0.1:6379: run `bash scripts/services.sh up redis`",
                    pytrace=False)


@pytest.fixture
def namespace(tmp_path: Path) -> str:
    return "i" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10] + ":"


@pytest.fixture
async def url(namespace: str) -> AsyncIterator[str]:
    require_server()
    made = f"{SERVER}?namespace={namespace}&lease_ttl=1"
    yield made
    await purge_namespace(made)


@pytest.fixture
async def broker(url: str) -> AsyncIterator[RedisBroker]:
    made = RedisBroker(url)
    await made.connect()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def plain() -> AsyncIterator[Any]:
    """The plain redis-py client, as a user of another framework would hold it."""
    require_server()
    client = redis.asyncio.Redis.from_url(SERVER)
    try:
        yield client
    finally:
        await client.aclose()

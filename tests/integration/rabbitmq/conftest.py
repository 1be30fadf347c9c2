"""Fixtures for the RabbitMQ adapter's own tests. They need the real server:
`bash scripts/services.sh up rabbitmq` (they fail, never skip, without it)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from herald.brokers.rabbitmq import RabbitBroker, from_url, purge_namespace

SERVER = "amqp://guest:guest@127.0.0.1:5672/"


def require_server() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        pytest.fail("RabbitMQ is not running on 127.0.0.1:5672: run `bash scripts/services.sh up rabbitmq`")


@pytest.fixture
def namespace(tmp_path: Path) -> str:
    return "i" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10] + "."


@pytest.fixture
async def url(namespace: str) -> AsyncIterator[str]:
    require_server()
    made = f"{SERVER}?namespace={namespace}"
    yield made
    await purge_namespace(made)


@pytest.fixture
async def broker(url: str) -> AsyncIterator[RabbitBroker]:
    made = from_url(url)
    await made.connect()
    try:
        yield made
    finally:
        await made.close()

"""Fixtures for the Kafka adapter's own tests. They need the real broker:
`bash scripts/services.sh up kafka` (they fail, never skip, without it)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from herald.brokers.kafka import KafkaBroker, from_url
from tests.kafka_namespaces import delete_namespaces

ADDRESS = "127.0.0.1:9092"
_made: set[str] = set()


def require_kafka() -> None:
    try:
        socket.create_connection(("127.0.0.1", 9092), timeout=2).close()
    except OSError:
        pytest.fail("Kafka is not running on 127.0.0.1:9092: run `bash scripts/services.sh up kafka`")


@pytest.fixture(scope="session", autouse=True)
def _clean_up_namespaces() -> Iterator[None]:
    """Topics and groups of the namespaces these tests made are deleted at the end."""
    require_kafka()
    yield
    delete_namespaces(ADDRESS, _made)


@pytest.fixture
def namespace(tmp_path: Path) -> str:
    ns = "i" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10] + "."
    _made.add(ns)
    return ns


@pytest.fixture
def url(namespace: str) -> str:
    require_kafka()
    return f"kafka://{ADDRESS}?namespace={namespace}"


@pytest.fixture
async def broker(url: str) -> AsyncIterator[KafkaBroker]:
    made = from_url(url)
    await made.connect()
    try:
        yield made
    finally:
        await made.close()

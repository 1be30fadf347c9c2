"""Fixtures for the Kafka adapter's own tests. They need the real broker:
`bash scripts/services.sh up kafka` (they fail, never skip, without it)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from herald.brokers.kafka import KafkaBroker, from_url

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
    if not _made:
        return
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": ADDRESS})
    mine = re.compile("^(" + "|".join(re.escape(ns) for ns in _made) + ")")
    topics = [t for t in admin.list_topics(timeout=5).topics if mine.match(t)]
    for future in (admin.delete_topics(topics, request_timeout=15) if topics else {}).values():
        with contextlib.suppress(Exception):
            future.result(timeout=15)
    groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid
              if mine.match(g.group_id)]
    for future in (admin.delete_consumer_groups(groups, request_timeout=15) if groups else {}).values():
        with contextlib.suppress(Exception):
            future.result(timeout=15)


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

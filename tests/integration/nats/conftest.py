"""Fixtures for the NATS adapter's own tests. They need the real server:
`bash scripts/services.sh up nats` (they fail, never skip, without it)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest

from herald.brokers.nats import NatsBroker, from_url

SERVER = "nats://127.0.0.1:4222"
# Namespaces made by tests: t<10 hex> (conformance), i<10 hex> (these tests).
_TEST_NAMESPACE = re.compile(r"^(?:KV_herald-groups-)?[ti][0-9a-f]{10}")


def _require_server() -> None:
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=2).close()
    except OSError:
        pytest.fail("NATS is not running on 127.0.0.1:4222: run `bash scripts/services.sh up nats`")


@pytest.fixture(scope="session", autouse=True)
def _clean_old_test_namespaces() -> None:
    """Streams of test namespaces older than an hour are removed: the server
    keeps everything between runs. Younger ones may belong to a running suite."""
    _require_server()
    asyncio.run(_remove_old_namespaces())


async def _remove_old_namespaces() -> None:
    nc = await nats.connect(SERVER)
    try:
        js = nc.jetstream()
        cutoff = datetime.now(UTC) - timedelta(hours=1)
        stale: list[str] = []
        offset = 0
        while page := await js.streams_info(offset):
            offset += len(page)
            stale.extend(
                info.config.name for info in page
                if info.config.name and _TEST_NAMESPACE.match(info.config.name)
                and info.created is not None and info.created < cutoff
            )
        for name in stale:
            await js.delete_stream(name)
    finally:
        await nc.close()


@pytest.fixture
def namespace(tmp_path: Path) -> str:
    return "i" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10]


@pytest.fixture
def url(namespace: str) -> str:
    _require_server()
    return f"{SERVER}?namespace={namespace}&lease_ttl=2"


@pytest.fixture
async def broker(url: str) -> AsyncIterator[NatsBroker]:
    made = from_url(url)
    await made.connect()
    try:
        yield made
    finally:
        await made.close()

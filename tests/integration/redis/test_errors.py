"""A wrong address or wrong options fail fast, with a message that says what to do."""

from __future__ import annotations

import time

import pytest

from herald import App
from herald.brokers import from_url
from herald.dedup_redis import RedisDedupStore
from herald.errors import BrokerUnavailable, ConfigError


async def test_closed_port_is_unavailable_quickly() -> None:
    broker = from_url("redis://127.0.0.1:6390/0")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as info:
        await broker.connect()
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert "127.0.0.1:6390" in message and "check that Redis runs there" in message


async def test_unknown_host_is_unavailable() -> None:
    broker = from_url("redis://no-such-host.invalid:6379/0?connect_timeout=1")
    with pytest.raises(BrokerUnavailable, match=r"no-such-host\.invalid:6379"):
        await broker.connect()


async def test_app_start_names_the_address() -> None:
    app = App("x", broker="redis://127.0.0.1:6390/0")
    with pytest.raises(BrokerUnavailable, match="6390"):
        await app.start()
    await app.stop()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis://127.0.0.1:6379/0?bogus=1", "unknown option 'bogus'"),
        ("redis://127.0.0.1:6379/0?partitions=many", "partitions='many'.*not a int"),
        ("redis://127.0.0.1:6379/0?partitions=0", "partitions must be 1..1024"),
        ("redis://127.0.0.1:6379/0?partitions=5000", "partitions must be 1..1024"),
        ("redis://127.0.0.1:6379/0?lease_ttl=0", "lease_ttl must be >= 0.5"),
        ("redis://127.0.0.1:6379/0?maxlen=-1", "maxlen must be >= 0"),
        ("redis://127.0.0.1:6379/0?retention=0", "retention must be > 0"),
        ("redis://127.0.0.1:6379/zero", "database number"),
        ("redis://127.0.0.1:port/0", "bad Redis URL"),
    ],
)
def test_garbage_options_are_config_errors(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_url(url)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        from_url("redis://127.0.0.1:6379/0?partitions=0&lease_ttl=0&retention=-1")
    assert all(word in str(info.value) for word in ("partitions", "lease_ttl", "retention"))


def test_reserved_topic_names() -> None:
    from herald.brokers.redis_wire import check_topic

    with pytest.raises(ConfigError, match="bookkeeping"):
        check_topic("herald:topics")


def test_dedup_store_rejects_garbage() -> None:
    with pytest.raises(ConfigError, match="unknown option 'partitions'"):
        RedisDedupStore("redis://127.0.0.1:6379/0?partitions=3")
    with pytest.raises(ConfigError, match="ttl must be > 0"):
        RedisDedupStore("redis://127.0.0.1:6379/0", ttl=0)


async def test_dedup_store_closed_port() -> None:
    store = RedisDedupStore("redis://127.0.0.1:6390/0")
    with pytest.raises(BrokerUnavailable, match="6390"):
        await store.seen("g", "id")
    await store.close()

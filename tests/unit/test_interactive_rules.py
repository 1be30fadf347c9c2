"""The interactive service's rules (seed 001, I1-I6), on both backends: the
embedded one (SQLite tables, memory cache) and the real one (PostgreSQL
tables in a schema of their own, Redis cache under a key prefix of its own).
The test id ends in `[sqlite-memory]` or `[postgres-redis]`.

PostgreSQL and Redis must be running: a test fails, never skips, without them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from examples.interactive.cache import (
    INCR_IF_EXISTS,
    CountersCache,
    MemoryCountersCache,
    RedisCountersCache,
    cache_key,
)
from examples.interactive.events import READ_TOPIC, ArticleRead
from examples.interactive.service import InteractiveSettings, NotFound, build
from examples.interactive.storage import Counters, Increment, InteractiveStorage, Read, open_storage

from herald import App, Batch, RetryPolicy

POSTGRES = "postgresql://herald:herald@127.0.0.1:5432/herald"
REDIS = "redis://127.0.0.1:6379/0"
BACKENDS = ["sqlite-memory", "postgres-redis"]
FAST = InteractiveSettings(
    batch=Batch(size=10, timeout=0.1),
    retry=RetryPolicy(attempts=3, backoff=0.01, stages=2, stage_delay=0.2),
)


# -- real services, one schema and one key prefix per test --------------------------------
async def postgres_schema() -> str:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        conn = await asyncpg.connect(POSTGRES, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES} is not answering ({exc}): "
                    "start it with `bash scripts/services.sh up postgresql`")
    await conn.close()
    return schema


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(POSTGRES, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def redis_prefix() -> str:
    client = aioredis.from_url(REDIS, socket_connect_timeout=3)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as exc:
        pytest.fail(f"Redis at {REDIS} is not answering ({exc}): "
                    "start it with `bash scripts/services.sh up redis`")
    finally:
        await client.aclose()
    return f"test-{uuid.uuid4().hex[:12]}:"


async def drop_keys(prefix: str) -> None:
    client = aioredis.from_url(REDIS)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@dataclass
class Backends:
    name: str
    storage_url: str
    cache_url: str


@pytest.fixture(params=BACKENDS)
async def backends(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backends]:
    if request.param == "sqlite-memory":
        yield Backends(request.param, f"sqlite:///{tmp_path / 'interactive.db'}", "memory://")
        return
    schema, prefix = await postgres_schema(), await redis_prefix()
    try:
        yield Backends(request.param, f"{POSTGRES}?schema={schema}", f"{REDIS}?prefix={prefix}")
    finally:
        await drop_schema(schema)
        await drop_keys(prefix)


def make_cache(url: str) -> CountersCache:
    if url == "memory://":
        return MemoryCountersCache()
    base, prefix = url.split("?prefix=")
    return RedisCountersCache(base, prefix=prefix)


@pytest.fixture
async def storage(backends: Backends) -> AsyncIterator[InteractiveStorage]:
    made = open_storage(backends.storage_url)
    await made.open()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def cache(backends: Backends) -> AsyncIterator[CountersCache]:
    made = make_cache(backends.cache_url)
    try:
        yield made
    finally:
        await made.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def read_count(storage: InteractiveStorage, aid: int) -> int:
    found = await storage.get("article", aid)
    return 0 if found is None else found.read_cnt


# -- I2: counters in one table, increments are upserts ------------------------------------
async def test_i2_read_increments_are_upserts(storage: InteractiveStorage) -> None:
    assert await storage.get("article", 1) is None
    added = await storage.add_reads([Read("e1", "article", 1), Read("e2", "article", 1),
                                     Read("e3", "article", 2)])
    assert added == [Increment("article", 1, "read_cnt", 2), Increment("article", 2, "read_cnt", 1)]
    await storage.add_reads([Read("e4", "article", 1)])
    assert await storage.get("article", 1) == Counters("article", 1, read_cnt=3)
    assert await storage.all_counters() == [Counters("article", 1, 3), Counters("article", 2, 1)]


async def test_i2_i6_a_read_event_id_counts_once_also_inside_one_batch(
    storage: InteractiveStorage,
) -> None:
    first = await storage.add_reads([Read("e1", "article", 1), Read("e1", "article", 1)])
    again = await storage.add_reads([Read("e1", "article", 1), Read("e2", "article", 1)])
    assert first == [Increment("article", 1, "read_cnt", 1)]
    assert again == [Increment("article", 1, "read_cnt", 1)]
    assert await read_count(storage, 1) == 2
    assert await storage.add_reads([]) == []


async def test_i6_counted_read_ids_are_forgotten_after_their_ttl(storage: InteractiveStorage) -> None:
    await storage.add_reads([Read("old-1", "article", 3), Read("old-2", "article", 3)])
    assert await storage.forget_reads(time.time() - 3600) == 0  # counted just now: kept
    assert await storage.add_reads([Read("old-1", "article", 3)]) == []
    assert await storage.forget_reads(time.time() + 1) == 2
    # forgotten ids count again (a redelivery after the ttl); the counters stay as they were
    assert await read_count(storage, 3) == 2
    assert await storage.add_reads([Read("old-1", "article", 3)]) == [Increment("article", 3, "read_cnt", 1)]


def test_the_read_ids_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="read_ids_ttl"):
        InteractiveSettings(read_ids_ttl=0)


# -- I5: like, cancel like and collect are idempotent per user -----------------------------
async def test_i5_like_cancel_collect_are_idempotent_per_user(storage: InteractiveStorage) -> None:
    assert await storage.like("article", 9, uid=1) is True
    assert await storage.like("article", 9, uid=1) is False  # the seed counted this twice
    assert await storage.like("article", 9, uid=2) is True
    assert await storage.collect("article", 9, uid=1) is True
    assert await storage.collect("article", 9, uid=1) is False
    assert await storage.get("article", 9) == Counters("article", 9, 0, like_cnt=2, collect_cnt=1)
    assert await storage.user_state("article", 9, 1) == (True, True)
    assert await storage.cancel_like("article", 9, uid=1) is True
    assert await storage.cancel_like("article", 9, uid=1) is False  # never below what is liked
    assert await storage.cancel_collect("article", 9, uid=1) is True
    assert await storage.user_state("article", 9, 1) == (False, False)
    assert await storage.like("article", 9, uid=1) is True  # liking again after a cancel counts
    assert await storage.get("article", 9) == Counters("article", 9, 0, like_cnt=2, collect_cnt=0)


async def test_i5_cancel_without_a_like_changes_nothing(storage: InteractiveStorage) -> None:
    assert await storage.cancel_like("article", 5, uid=1) is False
    assert await storage.cancel_collect("article", 5, uid=1) is False
    assert await storage.get("article", 5) is None
    assert await storage.user_state("article", 5, 1) == (False, False)


async def test_i5_concurrent_likes_of_one_user_count_once(storage: InteractiveStorage) -> None:
    results = await asyncio.gather(*(storage.like("article", 3, uid=4) for _ in range(10)))
    assert results.count(True) == 1
    found = await storage.get("article", 3)
    assert found is not None and found.like_cnt == 1


# -- I3: the cache hash is incremented only where it exists ---------------------------------
async def test_i3_increment_touches_only_an_existing_hash(
    cache: CountersCache, backends: Backends
) -> None:
    inc = [Increment("article", 1, "read_cnt", 2), Increment("article", 2, "like_cnt", 1)]
    assert await cache.incr_if_present(inc) == 0
    assert await cache.get("article", 1) is None  # no half-filled hash appeared
    await cache.put(Counters("article", 1, 10, 3, 1), ttl=60)
    assert await cache.incr_if_present(inc) == 1
    assert await cache.get("article", 1) == Counters("article", 1, 12, 3, 1)
    assert await cache.get("article", 2) is None
    if isinstance(cache, RedisCountersCache):  # the key itself, and the script as the seed's
        client = aioredis.from_url(REDIS)
        try:
            assert not await client.exists(cache.prefix + cache_key("article", 2))
            assert await client.hgetall(cache.prefix + "interactive:article:1") == {
                b"read_cnt": b"12", b"like_cnt": b"3", b"collect_cnt": b"1"}
        finally:
            await client.aclose()
        assert 'redis.call("EXISTS", key) == 1' in INCR_IF_EXISTS


async def test_i3_a_put_expires_after_its_ttl(backends: Backends) -> None:
    now = [1000.0]
    cache: CountersCache
    if backends.cache_url == "memory://":
        cache = MemoryCountersCache(clock=lambda: now[0])
    else:
        cache = make_cache(backends.cache_url)
    try:
        await cache.put(Counters("article", 1, 1, 2, 3), ttl=0.3)
        left = await cache.ttl("article", 1)
        assert left is not None and 0 < left <= 0.3
        if isinstance(cache, MemoryCountersCache):
            now[0] += 0.31
        else:
            await asyncio.sleep(0.5)
        assert await cache.get("article", 1) is None
        assert await cache.incr_if_present([Increment("article", 1, "read_cnt", 1)]) == 0
        assert await cache.ttl("article", 1) is None
    finally:
        await cache.close()


async def test_i3_miss_reads_the_table_and_writes_back_with_a_ttl(
    storage: InteractiveStorage, cache: CountersCache
) -> None:
    app = App("interactive", broker="memory://")
    service = build(app, storage, cache, InteractiveSettings(cache_ttl=120), own_resources=False)
    await storage.like("article", 7, uid=1)
    await storage.add_reads([Read("r1", "article", 7)])
    assert await cache.get("article", 7) is None
    assert await service.counters("article", 7) == Counters("article", 7, 1, 1, 0)
    assert service.figures.cache_misses == 1
    assert await cache.get("article", 7) == Counters("article", 7, 1, 1, 0)
    left = await cache.ttl("article", 7)
    assert left is not None and 110 < left <= 120
    # now the hash exists: a like updates it as well as the table
    assert await service.like("article", 7, uid=2)
    assert await service.counters("article", 7) == Counters("article", 7, 1, 2, 0)
    assert service.figures.cache_hits == 1
    with pytest.raises(NotFound, match="article 8"):
        await service.counters("article", 8)
    assert await cache.get("article", 8) is None  # a miss in the table is not cached


# -- I4 and I6: the batch consumer ----------------------------------------------------------
class FaultyStorage:
    """A real storage that fails on purpose: `before` times before its
    transaction, then `after` times after the commit (as a crash right after
    the commit would). It also records the size of every batch."""

    def __init__(self, inner: InteractiveStorage, *, before: int = 0, after: int = 0) -> None:
        self.inner = inner
        self.before = before
        self.after = after
        self.sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def add_reads(self, reads: Sequence[Read]) -> list[Increment]:
        self.sizes.append(len(reads))
        if self.before > 0:
            self.before -= 1
            raise ConnectionError("database went away")
        added = await self.inner.add_reads(reads)
        if self.after > 0:
            self.after -= 1
            raise TimeoutError("lost the answer after the commit")
        return added


async def run_reads(
    storage: InteractiveStorage,
    cache: CountersCache,
    publish: Callable[[App], Awaitable[int]],
    settings: InteractiveSettings = FAST,
) -> dict[str, int]:
    """Publish with `publish` (returns how many reads should count), run the
    consumer until article 1 has them all, give late ones a moment, stop.
    Returns herald's counts of the consumer."""
    app = App("interactive", broker="memory://")
    build(app, storage, cache, settings, own_resources=False)
    async with app:
        want = await publish(app)
        await eventually(lambda: _has(storage, want))
        await asyncio.sleep(0.3)
        (counts,) = app.stats().values()
    return counts


async def _has(storage: InteractiveStorage, want: int) -> bool:
    return await read_count(storage, 1) >= want


async def test_i4_batches_close_at_ten_events_and_the_cache_follows(
    storage: InteractiveStorage, cache: CountersCache
) -> None:
    faulty = FaultyStorage(storage)
    await cache.put(Counters("article", 1), ttl=60)  # cached: the batch increments it too

    async def publish(app: App) -> int:
        await app.publish_batch(READ_TOPIC, [ArticleRead(aid=1, uid=u) for u in range(1, 26)],
                                key="article:1")
        return 25

    await run_reads(faulty, cache, publish)  # type: ignore[arg-type]
    assert await read_count(storage, 1) == 25
    assert max(faulty.sizes) <= 10 and sum(faulty.sizes) == 25 and 0 not in faulty.sizes
    cached = await cache.get("article", 1)
    assert cached is not None and cached.read_cnt == 25


async def test_i6_duplicate_deliveries_count_once(
    storage: InteractiveStorage, cache: CountersCache
) -> None:
    async def publish(app: App) -> int:
        event = ArticleRead(aid=1, uid=3)
        for n in range(5):  # each id twice: back to back (one batch) and later (another)
            await app.publish(READ_TOPIC, event, key="article:1", id=f"read-{n}")
            await app.publish(READ_TOPIC, event, key="article:1", id=f"read-{n}")
        await asyncio.sleep(0.3)
        for n in range(5):
            await app.publish(READ_TOPIC, event, key="article:1", id=f"read-{n}")
        return 5

    counts = await run_reads(storage, cache, publish)
    assert await read_count(storage, 1) == 5
    assert counts["dead_lettered"] == 0


async def test_i6_a_batch_that_fails_after_its_commit_is_retried_and_counts_once(
    storage: InteractiveStorage, cache: CountersCache
) -> None:
    # herald's dedup=True would count these twice: it records ids only after the handler returns.
    faulty = FaultyStorage(storage, after=1)

    async def publish(app: App) -> int:
        await app.publish_batch(READ_TOPIC, [ArticleRead(aid=1, uid=u) for u in range(1, 8)],
                                key="article:1")
        return 7

    counts = await run_reads(faulty, cache, publish)  # type: ignore[arg-type]
    assert await read_count(storage, 1) == 7
    assert len(faulty.sizes) >= 2 and counts["retried"] >= 1  # it was retried


async def test_i4_i6_a_failing_batch_is_retried_never_skipped(
    storage: InteractiveStorage, cache: CountersCache
) -> None:
    # More failures than in-process attempts: the batch is split and moved to the
    # retry stage, and still every read counts once.
    faulty = FaultyStorage(storage, before=6)
    stats: dict[str, dict[str, int]] = {}

    async def publish(app: App) -> int:
        await app.publish_batch(READ_TOPIC, [ArticleRead(aid=1, uid=u) for u in range(1, 11)],
                                key="article:1")
        return 10

    app = App("interactive", broker="memory://")
    build(app, faulty, cache, FAST, own_resources=False)  # type: ignore[arg-type]
    async with app:
        await publish(app)
        await eventually(lambda: _has(storage, 10))
        await asyncio.sleep(0.3)
        stats = app.stats()
    assert await read_count(storage, 1) == 10
    (counts,) = stats.values()
    assert counts["retried"] >= 2 and counts["dead_lettered"] == 0
    assert counts["handled"] == 10


async def test_i4_a_bad_read_event_is_a_dead_letter_and_the_rest_count(
    storage: InteractiveStorage, cache: CountersCache
) -> None:
    app = App("interactive", broker="memory://")
    build(app, storage, cache, FAST, own_resources=False)
    async with app:
        await app.publish(READ_TOPIC, {"aid": 0, "uid": 1}, type="article.read", key="article:1")
        await app.publish(READ_TOPIC, {"aid": "one"}, type="article.read", key="article:1")
        await app.publish_batch(READ_TOPIC, [ArticleRead(aid=1, uid=u) for u in range(1, 4)],
                                key="article:1")
        await eventually(lambda: _has(storage, 3))
        await eventually(lambda: _dead(app, 2))
    assert await read_count(storage, 1) == 3


async def _dead(app: App, want: int) -> bool:
    return sum(c["dead_lettered"] for c in app.stats().values()) >= want


async def test_i4_a_cache_failure_after_the_commit_does_not_fail_the_batch(
    storage: InteractiveStorage,
) -> None:
    class BrokenCache(MemoryCountersCache):
        async def incr_if_present(self, increments: Sequence[Increment]) -> int:
            raise ConnectionError("cache down")

    cache = BrokenCache()
    await cache.put(Counters("article", 1), ttl=60)

    async def publish(app: App) -> int:
        await app.publish(READ_TOPIC, ArticleRead(aid=1, uid=1), key="article:1")
        return 1

    counts = await run_reads(storage, cache, publish)
    assert await read_count(storage, 1) == 1
    assert await cache.get("article", 1) is None  # dropped, so the next read refills it
    assert counts["retried"] == 0 and counts["handled"] == 1

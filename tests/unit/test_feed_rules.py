"""The feed's rules (seed 000, F1-F7) on both backends: SQLite tables with the
memory cache, and PostgreSQL tables with the Redis cache; the test id names
which (`[sqlite-memory]`, `[postgres-redis]`).

PostgreSQL and Redis must be running (`bash scripts/services.sh up postgresql`,
`... up redis`): a test fails, never skips, when they are not.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import msgspec
import pytest
import redis.asyncio as redis
from examples.feed import build
from examples.feed.cache import FolloweeCache, MemoryFolloweeCache, RedisFolloweeCache
from examples.feed.events import (
    FEED_TOPIC,
    ArticlePublished,
    FeedEventCreated,
    FeedEventError,
    UnknownFeedEventType,
)
from examples.feed.service import FeedService, FeedSettings
from examples.feed.storage import Cursor, FeedRow, FeedStorage, open_storage

from herald import App, DeadLetters, RetryPolicy, UnknownEventType

POSTGRES_DSN = os.environ.get("HERALD_TEST_POSTGRES", "postgresql://herald:herald@127.0.0.1:5432/herald")
REDIS_URL = os.environ.get("HERALD_TEST_REDIS", "redis://127.0.0.1:6379/0")
THRESHOLD = 3
T0 = 1_700_000_000_000_000  # a fixed time (µs) so tests can make equal times on purpose


@dataclass
class Backend:
    """A storage, and caches with a TTL whose clock the test can move."""

    name: str
    storage: FeedStorage
    make_cache: Callable[[float], FolloweeCache]
    advance: Callable[[float], Awaitable[None]]


async def _postgres(schema: str, drop: bool) -> None:
    try:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_DSN} is not answering ({exc}): "
                    "start it with `bash scripts/services.sh up postgresql`")
    try:
        if drop:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _redis_prefix_cleanup(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    except (OSError, redis.RedisError) as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not answering ({exc}): "
                    "start it with `bash scripts/services.sh up redis`")
    finally:
        await client.aclose()


@pytest.fixture(params=["sqlite-memory", "postgres-redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    caches: list[FolloweeCache] = []
    if request.param == "sqlite-memory":
        now = [0.0]

        def memory(ttl: float) -> FolloweeCache:
            cache = MemoryFolloweeCache(ttl, clock=lambda: now[0])
            caches.append(cache)
            return cache

        async def move(seconds: float) -> None:
            now[0] += seconds

        storage = open_storage(f"sqlite:///{tmp_path / 'feed.db'}")
        await storage.open()
        yield Backend(request.param, storage, memory, move)
        await storage.close()
        return
    schema = f"feed_{uuid.uuid4().hex[:12]}"
    prefix = f"test-{schema}:"
    await _postgres(schema, drop=False)
    await _redis_prefix_cleanup(prefix)

    def in_redis(ttl: float) -> FolloweeCache:
        cache = RedisFolloweeCache(REDIS_URL, prefix=prefix, ttl=ttl)
        caches.append(cache)
        return cache

    async def wait(seconds: float) -> None:
        await asyncio.sleep(seconds)  # Redis expires keys on its own clock

    storage = open_storage(f"{POSTGRES_DSN}?schema={schema}")
    await storage.open()
    try:
        yield Backend(request.param, storage, in_redis, wait)
    finally:
        await storage.close()
        for cache in caches:
            await cache.close()
        await _postgres(schema, drop=True)
        await _redis_prefix_cleanup(prefix)


def make_service(backend: Backend, threshold: int = THRESHOLD, ttl: float = 600.0) -> FeedService:
    # Not started: these tests apply events straight through the service.
    app = App("feed-rules", broker="memory://")
    return FeedService(app, backend.storage, backend.make_cache(ttl), FeedSettings(threshold=threshold))


def ev(kind: str, **ext: int | str) -> FeedEventCreated:
    return FeedEventCreated(type=kind, ext={k: str(v) for k, v in ext.items()})


async def apply(service: FeedService, event: FeedEventCreated, at: int = T0) -> str:
    event_id = str(uuid.uuid4())
    await service.create_feed_event(event, event_id=event_id, at=at)
    return event_id


async def follow(service: FeedService, follower: int, followee: int, at: int = T0) -> None:
    await apply(service, ev("follow", follower=follower, followee=followee), at)


async def whole_feed(service: FeedService, uid: int, limit: int) -> list[FeedRow]:
    """Every page in turn; fails if a page is full but says it is the last, or the reverse."""
    rows: list[FeedRow] = []
    before: Cursor | None = None
    for _ in range(10_000):
        page = await service.feed(uid, limit=limit, before=before)
        rows.extend(page.rows)
        if page.next_cursor is None:
            return rows
        assert len(page.rows) == limit
        before = page.next_cursor
    raise AssertionError("paging never ended")


def newest_first(rows: list[FeedRow]) -> list[FeedRow]:
    return sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)


# -- F3: push or pull, at the threshold's edges ------------------------------------------
@pytest.mark.parametrize("followers", [THRESHOLD - 1, THRESHOLD, THRESHOLD + 1],
                         ids=["threshold-1", "threshold", "threshold+1"])
async def test_f3_push_up_to_threshold_pull_above(backend: Backend, followers: int) -> None:
    service = make_service(backend)
    author = 1
    fans = list(range(100, 100 + followers))
    for fan in fans:
        await follow(service, fan, author)
    await apply(service, ev("article", uid=author, aid=77, title="edge"), at=T0 + 10)

    counts = await backend.storage.counts()
    follow_notices = followers  # F4: each follow notified the author
    if followers <= THRESHOLD:
        assert service.counts["articles_pushed"] == 1
        assert (counts.push_rows - follow_notices, counts.pull_rows) == (followers, 0)
    else:
        assert service.counts["articles_pulled"] == 1
        assert (counts.push_rows - follow_notices, counts.pull_rows) == (0, 1)
    # Either way every follower sees the article once, with the same ext fields (F3).
    for fan in fans:
        rows = [r for r in (await service.feed(fan)).rows if r.type == "article"]
        assert [(r.kind, r.ext) for r in rows] == [
            ("push" if followers <= THRESHOLD else "pull", {"uid": "1", "aid": "77", "title": "edge"})
        ]
        assert rows[0].uid == (fan if followers <= THRESHOLD else author)  # F1
    # Someone who does not follow the author sees nothing.
    assert (await service.feed(999)).rows == []


async def test_f3_threshold_zero_pulls_for_any_follower(backend: Backend) -> None:
    service = make_service(backend, threshold=0)
    await apply(service, ev("article", uid=1, aid=1))  # no followers: pushed to nobody
    await follow(service, 2, 1)
    await apply(service, ev("article", uid=1, aid=2), at=T0 + 1)
    assert [(r.kind, r.ext["aid"]) for r in (await service.feed(2)).rows] == [("pull", "2")]


# -- F4: follow and like notify -------------------------------------------------------------
async def test_f4_follow_and_like_notify_the_user(backend: Backend) -> None:
    service = make_service(backend)
    await follow(service, 2, 1)
    await apply(service, ev("like", liker=3, liked=1, biz="article", biz_id=9), at=T0 + 1)
    rows = (await service.feed(1)).rows
    assert [(r.kind, r.uid, r.type, r.ext) for r in rows] == [
        ("push", 1, "like", {"liker": "3", "liked": "1", "biz": "article", "biz_id": "9"}),
        ("push", 1, "follow", {"follower": "2", "followee": "1"}),
    ]
    assert await service.followees(2) == [1]  # the relation is stored too
    # Following again changes nothing and notifies nobody.
    await follow(service, 2, 1, at=T0 + 2)
    assert len((await service.feed(1)).rows) == 2


async def test_redelivered_event_is_applied_once(backend: Backend) -> None:
    service = make_service(backend)
    for fan in (10, 11):
        await follow(service, fan, 1)
    article = ev("article", uid=1, aid=5)
    for _ in range(3):  # at-least-once delivery: the same event id again
        await service.create_feed_event(article, event_id="same-id", at=T0 + 5)
    assert len([r for r in (await service.feed(10)).rows if r.type == "article"]) == 1
    assert service.counts["duplicates"] == 2


# -- F5: merge order and paging -----------------------------------------------------------
async def build_mixed_feed(service: FeedService, reader: int) -> None:
    """Pushed and pulled rows for `reader`, most of them at equal times."""
    big_authors = [500, 501, 502]  # above the threshold: their articles are pulled
    for author in big_authors:
        for fan in range(600, 600 + THRESHOLD):
            await follow(service, fan, author, at=T0 - 100)
        await follow(service, reader, author, at=T0 - 100)
    small_author = 400  # pushed to the reader
    await follow(service, reader, small_author, at=T0 - 100)
    for n in range(12):
        at = T0 + (n // 5)  # runs of five events with the same time
        await apply(service, ev("article", uid=big_authors[n % 3], aid=1000 + n), at)
        await apply(service, ev("article", uid=small_author, aid=2000 + n), at)
        await apply(service, ev("like", liker=9, liked=reader, biz="article", biz_id=n), at)


async def test_f5_merge_newest_first_stable_on_equal_times(backend: Backend) -> None:
    service = make_service(backend)
    reader = 7
    await build_mixed_feed(service, reader)
    rows = (await service.feed(reader, limit=100)).rows
    assert {r.kind for r in rows} == {"push", "pull"}
    assert len(rows) == 36  # 12 pulled + 12 pushed articles + 12 likes
    assert rows == newest_first(rows)  # ties on time broken by id, newest id first
    assert len({r.created_at for r in rows}) == 3  # the ties are really there
    assert (await service.feed(reader, limit=100)).rows == rows  # the same order every time


@pytest.mark.parametrize("limit", [1, 2, 5, 7, 36, 37])
async def test_f5_paging_never_repeats_or_skips(backend: Backend, limit: int) -> None:
    service = make_service(backend)
    reader = 7
    await build_mixed_feed(service, reader)
    everything = (await service.feed(reader, limit=100)).rows
    paged = await whole_feed(service, reader, limit)
    assert [r.id for r in paged] == [r.id for r in everything]
    assert len({r.id for r in paged}) == len(paged) == 36


async def test_f5_cursor_is_exclusive_and_parsable(backend: Backend) -> None:
    service = make_service(backend)
    await build_mixed_feed(service, 7)
    first = await service.feed(7, limit=5)
    assert first.next_cursor == first.rows[-1].cursor
    again = Cursor.parse(str(first.next_cursor))
    assert again == first.next_cursor
    second = await service.feed(7, limit=5, before=again)
    assert second.rows[0].cursor < first.rows[-1].cursor
    for garbage in ["", "12", "a.b", "1.-2", "1.2.3", "\uff19.1"]:
        with pytest.raises(ValueError, match="bad cursor"):
            Cursor.parse(garbage)


async def test_f5_more_than_200_followees_none_dropped(backend: Backend) -> None:
    service = make_service(backend, threshold=0)  # every article with a follower is pulled
    reader, authors = 1, list(range(1000, 1250))
    for author in authors:
        await follow(service, reader, author, at=T0 - 1)
    for n, author in enumerate(authors):
        await apply(service, ev("article", uid=author, aid=author), at=T0 + n % 4)
    assert len(await service.followees(reader)) == 250
    rows = await whole_feed(service, reader, limit=60)
    assert sorted(int(r.ext["aid"]) for r in rows) == authors  # the seed would stop at 200
    assert all(r.kind == "pull" for r in rows)
    assert rows == newest_first(rows)


# -- F6: the followee cache -------------------------------------------------------------
async def test_f6_followees_cached_until_ttl(backend: Backend) -> None:
    ttl = 0.5
    service = make_service(backend, ttl=ttl)
    await follow(service, 1, 2)
    assert await service.followees(1) == [2]  # a miss fills the cache
    assert service.counts["cache_misses"] == 1
    # A follow written behind the service's back: the cached list is served until the TTL.
    await backend.storage.record_follow("elsewhere", 1, 3, T0)
    assert await service.followees(1) == [2]
    assert service.counts["cache_hits"] == 1
    await backend.advance(ttl + 0.3)
    assert await service.followees(1) == [2, 3]  # expired: read from the follow relation
    assert service.counts["cache_misses"] == 2


async def test_f6_follow_through_the_service_drops_the_cached_list(backend: Backend) -> None:
    service = make_service(backend)
    await follow(service, 1, 2)
    assert await service.followees(1) == [2]
    await follow(service, 1, 3)
    assert await service.followees(1) == [2, 3]


# -- F2: unknown types --------------------------------------------------------------------
async def test_f2_unknown_type_is_refused_with_a_clear_error(backend: Backend) -> None:
    with pytest.raises(UnknownFeedEventType, match=r"unknown feed event type 'poke'; known types: article"):
        FeedEventCreated(type="poke", ext={})
    assert issubclass(UnknownFeedEventType, UnknownEventType)  # herald's poison: never retried
    with pytest.raises(FeedEventError, match="needs positive integer ext field"):
        FeedEventCreated(type="follow", ext={"follower": "1"})
    with pytest.raises(UnknownFeedEventType, match="unknown feed event type 'poke'"):
        msgspec.json.decode(b'{"type": "poke"}', type=FeedEventCreated)
    with pytest.raises(msgspec.ValidationError, match="needs positive integer ext field"):
        msgspec.json.decode(b'{"type": "like", "ext": {"liker": "1"}}', type=FeedEventCreated)
    # Even an event that slipped past its own check is refused, not guessed at.
    sneaky = ev("like", liker=1, liked=2)
    sneaky.type = "poke"  # attribute writes are not validated
    with pytest.raises(UnknownFeedEventType, match="unknown feed event type 'poke'"):
        await make_service(backend).create_feed_event(sneaky, event_id="x", at=T0)


async def test_f2_unknown_type_on_feed_event_goes_to_dead_letters(backend: Backend) -> None:
    """Through the broker: a bad feed event is a dead letter at once, with its reason,
    never retried; good events around it are applied (F2 FIX, F7)."""
    policy = RetryPolicy(attempts=3, backoff=0.01, stages=2, stage_delay=0.2)
    app = App("feed-rules", broker="memory://")
    service = build(app, backend.storage, backend.make_cache(600.0),
                    FeedSettings(threshold=THRESHOLD, retry=policy))
    async with app:
        await service.publish_feed_event(ev("follow", follower=2, followee=1))
        # Two topics have no order between them: the follow first, then the article.
        for _ in range(200):
            if (await backend.storage.counts()).follows == 1:
                break
            await asyncio.sleep(0.05)
        await app.publish(FEED_TOPIC, {"type": "poke", "ext": {}}, type="feed.event_created")
        await app.publish(FEED_TOPIC, {"type": "like", "ext": {"liker": "x"}}, type="feed.event_created")
        await app.publish(FEED_TOPIC, {"uid": 1}, type="feed.poked")  # a type nobody registered
        await app.publish("article_feed_event", ArticlePublished(uid=1, aid=42, title="t"))
        dead = DeadLetters(app.broker, policy)
        letters = []
        for _ in range(200):
            letters = await dead.list(FEED_TOPIC)
            if len(letters) == 3 and (await backend.storage.counts()).processed == 2:
                break
            await asyncio.sleep(0.05)
        stats = app.stats()
        page = await service.feed(2)
    assert [(d.reason, d.error_type, d.attempts) for d in letters] == [
        ("unknown-type", "UnknownFeedEventType", 0),
        ("schema", "DecodeError", 0),
        ("unknown-type", "UnknownEventType", 0),
    ]
    assert "unknown feed event type 'poke'; known types: article, follow, like" in letters[0].error_message
    assert "a like feed event needs positive integer ext field(s) liker, liked" in letters[1].error_message
    assert "unknown event type 'feed.poked'" in letters[2].error_message
    assert sum(s["retried"] for s in stats.values()) == 0
    assert sum(s["dead_lettered"] for s in stats.values()) == 3
    # The good ones went through: the follow, and the article (aid 42, not the author id: F7).
    assert [(r.type, r.ext.get("aid")) for r in page.rows] == [("article", "42")]


async def test_f5_feed_is_one_query_for_any_number_of_followees(backend: Backend) -> None:
    """40,000 followees in one read: past SQLite's and PostgreSQL's bound-parameter
    limits (32,766 and 32,767), since the list is one parameter, not one per followee."""
    service = make_service(backend, threshold=0)
    await follow(service, 5, 39_999)
    await apply(service, ev("article", uid=39_999, aid=1))
    followees = list(range(1, 40_001))
    rows = await backend.storage.feed(5, followees, Cursor.top(), 10)
    assert [(r.kind, r.uid) for r in rows] == [("pull", 39_999)]

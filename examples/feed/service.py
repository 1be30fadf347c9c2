"""The feed service (seed 000): feed events in, merged feeds out.

```python
app = App("feed", broker="sqlite:///herald.db")
feed = build(app, open_storage("sqlite:///feed.db"), MemoryFolloweeCache(), FeedSettings(threshold=100))
async with app:
    await feed.publish_article(uid=1, aid=10, title="hello")
    page = await feed.feed(uid=2, limit=20)
```

Rules kept or fixed (docs/examples/feed.md says more):
F2 dispatch on the type, an unknown type is a dead letter with its reason;
F3 push to each follower up to `threshold` followers, one pulled row above;
F4 follow and like notify the followed or liked user; F5 all followees,
newest first by (created_at, id), cursor paging; F6 followee cache with a
TTL; F7 typed article events, decoded and tested end to end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from herald import App, Context, RetryPolicy

from .cache import DEFAULT_TTL, FolloweeCache, open_cache
from .events import (
    ARTICLE,
    ARTICLE_TOPIC,
    FEED_TOPIC,
    FOLLOW,
    LIKE,
    ArticlePublished,
    FeedEventCreated,
    FeedEventError,
    UnknownFeedEventType,
)
from .storage import (
    Cursor,
    FeedCounts,
    FeedRow,
    FeedStorage,
    Kind,
    NewRow,
    micros_of,
    now_micros,
    open_storage,
)

DEFAULT_RETRY = RetryPolicy(attempts=3, backoff=0.05, stages=2, stage_delay=1.0)


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """`threshold`: an author with at most this many followers has articles pushed
    to each of them; above it, one pulled row is written (F3)."""

    threshold: int = 100
    page_limit: int = 20
    max_page_limit: int = 200
    group: str = "feed"
    retry: RetryPolicy = field(default_factory=lambda: DEFAULT_RETRY)

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) or self.threshold < 0:
            problems.append(f"threshold must be an integer >= 0, got {self.threshold!r}")
        if not 1 <= self.page_limit <= self.max_page_limit:
            problems.append(f"page_limit must be 1..max_page_limit ({self.max_page_limit})")
        if problems:
            raise ValueError("FeedSettings: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class FeedPage:
    rows: list[FeedRow]
    next_cursor: Cursor | None  # None: this was the last page

    def to_json(self) -> dict[str, object]:
        return {
            "items": [row.to_json() for row in self.rows],
            "next_cursor": None if self.next_cursor is None else str(self.next_cursor),
        }


class FeedService:
    """The feed's rules over a storage and a cache. Safe from several tasks."""

    def __init__(
        self, app: App, storage: FeedStorage, cache: FolloweeCache, settings: FeedSettings
    ) -> None:
        self.app = app
        self.storage = storage
        self.cache = cache
        self.settings = settings
        self.counts: Counter[str] = Counter()  # this process's work, for the summary
        self.last_counts: FeedCounts | None = None  # the tables' figures at the last stats()
        # F2: the type picks the handler; FeedEventCreated already refuses unknown types.
        self._handlers: dict[str, Callable[[FeedEventCreated, str, int], Awaitable[None]]] = {
            ARTICLE: self._article,
            FOLLOW: self._follow,
            LIKE: self._like,
        }

    async def open(self) -> None:
        await self.storage.open()

    async def close(self) -> None:
        await self.storage.close()
        await self.cache.close()

    async def stats(self) -> FeedCounts:
        """The stored figures (all processes); also kept as `last_counts`."""
        self.last_counts = await self.storage.counts()
        return self.last_counts

    # -- F3: push or pull ---------------------------------------------------------------
    def mode_for(self, followers: int) -> Kind:
        return "push" if followers <= self.settings.threshold else "pull"

    # -- creating feed events -----------------------------------------------------------
    async def create_feed_event(self, event: FeedEventCreated, *, event_id: str, at: int) -> None:
        """Apply one feed event exactly once (by `event_id`); `at` is its time in µs."""
        handler = self._handlers.get(event.type)
        if handler is None:  # only reachable by bypassing FeedEventCreated's own check
            raise UnknownFeedEventType(event.type)
        await handler(event, event_id, at)

    async def _article(self, event: FeedEventCreated, event_id: str, at: int) -> None:
        outcome = await self.storage.record_article(
            event_id, event.id_field("uid"), ARTICLE, dict(event.ext), at, self.mode_for
        )
        if not outcome.applied:
            self.counts["duplicates"] += 1
            return
        self.counts[f"articles_{outcome.mode}ed"] += 1
        self.counts[f"{outcome.mode}_rows"] += outcome.rows

    async def _follow(self, event: FeedEventCreated, event_id: str, at: int) -> None:
        await self._add_follow(event.id_field("follower"), event.id_field("followee"), event_id, at)

    async def _like(self, event: FeedEventCreated, event_id: str, at: int) -> None:
        row = NewRow("push", event.id_field("liked"), LIKE, dict(event.ext), at)
        if await self.storage.record_rows(event_id, [row]):
            self.counts["likes"] += 1
            self.counts["push_rows"] += 1
        else:
            self.counts["duplicates"] += 1

    async def _add_follow(self, follower: int, followee: int, event_id: str, at: int) -> bool:
        added = await self.storage.record_follow(event_id, follower, followee, at)
        # After the commit: the next read of this follower's feed sees the new followee.
        await self.cache.forget(follower)
        self.counts["follows" if added else "follows_unchanged"] += 1
        if added:
            self.counts["push_rows"] += 1
        return added

    async def follow(self, follower: int, followee: int, *, event_id: str) -> bool:
        """The API's follow: stored at once, the followee notified (F4). True if new."""
        if follower == followee:
            raise FeedEventError("a user cannot follow themselves")
        return await self._add_follow(follower, followee, event_id, now_micros())

    # -- reading ------------------------------------------------------------------------
    async def followees(self, follower: int) -> list[int]:
        """F6: from the cache, else from the follow relation (then cached)."""
        cached = await self.cache.get(follower)
        if cached is not None:
            self.counts["cache_hits"] += 1
            return cached
        self.counts["cache_misses"] += 1
        followees = await self.storage.followees(follower)
        await self.cache.set(follower, followees)
        return followees

    async def feed(self, uid: int, *, limit: int | None = None, before: Cursor | None = None) -> FeedPage:
        """F5: `uid`'s pushed rows and every followee's pulled rows, newest first.
        Pass the page's `next_cursor` as `before` for the next page."""
        limit = self.settings.page_limit if limit is None else limit
        if not 1 <= limit <= self.settings.max_page_limit:
            raise ValueError(f"limit must be 1..{self.settings.max_page_limit}, got {limit}")
        followees = await self.followees(uid)
        # One more than asked: tells whether another page exists.
        rows = await self.storage.feed(uid, followees, before or Cursor.top(), limit + 1)
        if len(rows) > limit:
            return FeedPage(rows[:limit], rows[limit - 1].cursor)
        return FeedPage(rows, None)

    # -- publishing (what other services do; the API and the workload use it) -----------
    async def publish_article(self, *, uid: int, aid: int, title: str = "") -> str:
        return await self.app.publish(
            ARTICLE_TOPIC, ArticlePublished(uid=uid, aid=aid, title=title), key=str(uid)
        )

    async def publish_feed_event(self, event: FeedEventCreated) -> str:
        return await self.app.publish(FEED_TOPIC, event, key=_key_of(event))


def _key_of(event: FeedEventCreated) -> str:
    """Events about one user stay in order: a follower's follows, a liked user's likes."""
    name = {ARTICLE: "uid", FOLLOW: "follower", LIKE: "liked"}[event.type]
    return event.ext[name]


def build(
    app: App,
    storage: FeedStorage,
    cache: FolloweeCache,
    settings: FeedSettings | None = None,
) -> FeedService:
    """Add the feed's subscribers to `app`; storage opens when the app starts
    and closes (with the cache) when it stops."""
    settings = settings or FeedSettings()
    service = FeedService(app, storage, cache, settings)

    @app.subscriber(ARTICLE_TOPIC, group=settings.group, retry=settings.retry)
    async def on_article(event: ArticlePublished, ctx: Context) -> None:
        await service.create_feed_event(
            event.as_feed_event(), event_id=ctx.event_id, at=micros_of(ctx.envelope.time)
        )

    @app.subscriber(FEED_TOPIC, group=settings.group, retry=settings.retry)
    async def on_feed_event(event: FeedEventCreated, ctx: Context) -> None:
        await service.create_feed_event(event, event_id=ctx.event_id, at=micros_of(ctx.envelope.time))

    app.on_startup(service.open)
    app.on_shutdown(service.close)
    return service


def from_urls(
    broker: str,
    storage_url: str,
    cache_url: str = "memory://",
    *,
    cache_prefix: str = "",
    cache_ttl: float = DEFAULT_TTL,
    settings: FeedSettings | None = None,
    name: str = "feed",
) -> FeedService:
    """The whole service from URLs (a process of its own): `App(name, broker)` with
    the feed's subscribers. Start it with `await feed.app.start()` or `feed.app.run()`."""
    retry = (settings or FeedSettings()).retry
    app = App(name, broker=broker, retry=retry)
    cache = open_cache(cache_url, prefix=cache_prefix, ttl=cache_ttl)
    return build(app, open_storage(storage_url), cache, settings)

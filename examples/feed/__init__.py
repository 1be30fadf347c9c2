"""The feed service of seed 000: article, follow and like events become feed
rows, pushed to each follower or pulled at read time, merged newest first.

Parts: events.py (typed events, topics), storage.py (the interface) with
store_sqlite.py and store_postgres.py, cache.py (followee lists, memory or
Redis), service.py (the App's handlers and the rules), api.py (HTTP),
workload.py (what `herald demo` drives and checks). See docs/examples/feed.md.
"""

from __future__ import annotations

from .cache import FolloweeCache, MemoryFolloweeCache, RedisFolloweeCache, open_cache
from .events import (
    ARTICLE_TOPIC,
    FEED_TOPIC,
    ArticlePublished,
    FeedEventCreated,
    FeedEventError,
    UnknownFeedEventType,
)
from .service import FeedPage, FeedService, FeedSettings, build, from_urls
from .storage import Cursor, FeedRow, FeedStorage, open_storage

__all__ = [
    "ARTICLE_TOPIC",
    "FEED_TOPIC",
    "ArticlePublished",
    "Cursor",
    "FeedEventCreated",
    "FeedEventError",
    "FeedPage",
    "FeedRow",
    "FeedService",
    "FeedSettings",
    "FeedStorage",
    "FolloweeCache",
    "MemoryFolloweeCache",
    "RedisFolloweeCache",
    "UnknownFeedEventType",
    "build",
    "from_urls",
    "open_cache",
    "open_storage",
]

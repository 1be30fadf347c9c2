"""The feed service (seed 000) as a part of the demo.

In this process: the service's own App and FeedService. In a process of its
own: the served API, and a driver made as docs/examples/feed.md says, a
FeedService without subscribers on the same tables that publishes through
an App of its own; the sample page and the service's own figures come over HTTP.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from rich.table import Table

from herald import App

from ..feed import (
    ARTICLE_TOPIC,
    FEED_TOPIC,
    FeedService,
    FeedSettings,
    build,
    open_cache,
    open_storage,
    workload,
)
from ..feed.api import make_api
from .parts import Place, Progress, Served, Stats, Summary
from .service_process import ServiceProcess

NAME = "feed"
SERVICES = ("feed",)
PROCESSES = (NAME,)  # with --broker: one process
TOPICS = (ARTICLE_TOPIC, FEED_TOPIC)
SETTINGS = FeedSettings(threshold=5)  # a small threshold keeps the workload small: ~40 users
PAGE = 6  # rows of the sample page


def _service(app: App, place: Place) -> FeedService:
    cache = open_cache(place.cache, prefix=place.cache_prefix)
    return build(app, open_storage(place.store), cache, SETTINGS)


def served(place: Place, service: str = NAME) -> Served:
    app = App(NAME, broker=place.broker, retry=SETTINGS.retry)
    return Served(make_api(_service(app, place)), [app])


class _FeedPart:
    name = NAME
    services = SERVICES
    topics = TOPICS

    def __init__(self, feed: FeedService) -> None:
        self.feed = feed
        self.expected: workload.Expected | None = None
        self.stats: Stats = {}

    async def drive(self, rng: random.Random, progress: Progress) -> None:
        self.expected = await workload.drive(self.feed, rng, progress)

    async def check(self) -> list[str]:
        assert self.expected is not None, "drive first"
        return await workload.check(self.feed, self.expected)

    def expected_dead_letters(self) -> int | None:
        return None if self.expected is None else len(self.expected.poison_ids)

    def _busiest_reader(self) -> int:
        """The user with the most rows to read: the sample page shows both kinds."""
        expected = self.expected
        assert expected is not None
        return max(range(1, expected.users + 1), key=lambda uid: (sum(expected.feed_of(uid).values()), -uid))

    async def _page(self, uid: int) -> dict[str, Any]:
        return (await self.feed.feed(uid, limit=PAGE)).to_json()

    async def summary(self) -> Summary:
        lines = workload.summary(self.feed)
        if self.expected is None:
            return Summary(lines)
        uid = self._busiest_reader()
        page = await self._page(uid)
        table = Table(title=f"feed page 1 of user {uid} (newest first, {PAGE} rows)", title_justify="left")
        for column in ("row", "kind", "type", "what"):
            table.add_column(column)
        for row in page["items"]:
            table.add_row(str(row["id"]), row["kind"], row["type"], _what(row["type"], row["ext"]))
        more = "another page follows" if page["next_cursor"] else "the only page"
        lines.append(f"feed: sample page of user {uid}: {len(page['items'])} rows, {more}")
        return Summary(lines, [table])


def _what(kind: str, ext: dict[str, str]) -> str:
    if kind == "article":
        return f"user {ext.get('uid')} wrote article {ext.get('aid')}"
    if kind == "follow":
        return f"user {ext.get('follower')} follows user {ext.get('followee')}"
    return f"user {ext.get('liker')} liked {ext.get('biz')} {ext.get('biz_id')}"


class LocalFeed(_FeedPart):
    """The feed in this process."""

    def __init__(self, place: Place) -> None:
        self.app = App(NAME, broker=place.broker, retry=SETTINGS.retry)
        super().__init__(_service(self.app, place))

    async def start(self) -> None:
        await self.app.start()

    async def stop(self) -> None:
        await self.app.stop()
        self.stats = {self.app.name: self.app.stats()}


class RemoteFeed(_FeedPart):
    """The feed in its own process; the driver shares its tables and broker."""

    def __init__(self, place: Place, process: ServiceProcess) -> None:
        self.process = process
        self.driver_open = False
        self.driver_app = App("feed-driver", broker=place.broker)  # publishes only: no subscribers
        cache = open_cache(place.cache, prefix=place.cache_prefix + "driver:")
        super().__init__(FeedService(self.driver_app, open_storage(place.store), cache, SETTINGS))

    async def start(self) -> None:
        await self.process.start()
        await self.driver_app.start()
        await self.feed.open()
        self.driver_open = True

    async def _page(self, uid: int) -> dict[str, Any]:
        assert self.process.client is not None
        answer = await self.process.client.get(f"/users/{uid}/feed", params={"limit": str(PAGE)})
        answer.raise_for_status()
        page: dict[str, Any] = answer.json()
        return page

    async def summary(self) -> Summary:
        # The service's own work (pushed, pulled, cache hits) was done in its process.
        assert self.process.client is not None
        answer = await self.process.client.get("/stats")
        answer.raise_for_status()
        self.feed.counts = Counter(answer.json()["this_process"])
        return await super().summary()

    async def stop(self) -> None:
        try:
            if self.driver_open:
                await self.feed.close()
            await self.driver_app.stop()
        finally:
            self.stats = await self.process.stop()


def local(place: Place) -> LocalFeed:
    return LocalFeed(place)


def remote(place: Place, spawn: Callable[[str], ServiceProcess]) -> RemoteFeed:
    return RemoteFeed(place, spawn(NAME))

"""The feed service (seed 000) as a part of the demo.

In this process: the service's own App and FeedService, driven through
`workload.LocalFeed`. In a process of its own: the served API, driven over
HTTP through `workload.HttpFeed` (follows, likes and articles through the
feed's API; a producer's retry and an event of an unknown type through the
process's publishing endpoint, publishing.py); the figures, the sample page
and the process's own counts come over HTTP too.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from rich.table import Table

from herald import App

from ..feed import ARTICLE_TOPIC, FEED_TOPIC, FeedSettings, build, open_cache, open_storage, workload
from ..feed.api import make_api
from .parts import Place, Progress, Served, Stats, Summary, apps_stats
from .service_process import ServiceProcess

NAME = "feed"
SERVICES = ("feed",)
PROCESSES = (NAME,)  # with --broker: one process
TOPICS = (ARTICLE_TOPIC, FEED_TOPIC)
SETTINGS = FeedSettings(threshold=5)  # a small threshold keeps the workload small: ~40 users
PAGE = 6  # rows of the sample page


def served(place: Place, service: str = NAME) -> Served:
    app = App(NAME, broker=place.broker, retry=SETTINGS.retry)
    cache = open_cache(place.cache, prefix=place.cache_prefix)
    return Served(make_api(build(app, open_storage(place.store), cache, SETTINGS)), [app])


class _FeedPart:
    name = NAME
    services = SERVICES
    topics = TOPICS

    def __init__(self) -> None:
        self.expected: workload.Expected | None = None
        self.stats: Stats = {}
        self.client: workload.FeedClient | None = None

    async def drive(self, rng: random.Random, progress: Progress) -> None:
        assert self.client is not None, "start first"
        self.expected = await workload.drive(self.client, rng, progress)

    async def check(self) -> list[str]:
        assert self.client is not None and self.expected is not None, "drive first"
        return await workload.check(self.client, self.expected)

    def expected_dead_letters(self) -> int | None:
        return None if self.expected is None else len(self.expected.poison_ids)

    def _busiest_reader(self) -> int:
        """The user with the most rows to read: the sample page shows both kinds."""
        expected = self.expected
        assert expected is not None
        return max(range(1, expected.users + 1), key=lambda uid: (sum(expected.feed_of(uid).values()), -uid))

    async def summary(self) -> Summary:
        assert self.client is not None, "start first"
        await self.client.stats()  # the tables' figures, and over HTTP the feed process's own work
        lines = workload.summary(self.client)
        if self.expected is None:
            return Summary(lines)
        uid = self._busiest_reader()
        page = (await self.client.feed(uid, limit=PAGE)).to_json()
        table = Table(title=f"feed page 1 of user {uid} (newest first, {PAGE} rows)", title_justify="left")
        for column in ("row", "kind", "type", "what"):
            table.add_column(column)
        items: list[dict[str, Any]] = page["items"]  # type: ignore[assignment]
        for row in items:
            table.add_row(str(row["id"]), row["kind"], row["type"], _what(row["type"], row["ext"]))
        more = "another page follows" if page["next_cursor"] else "the only page"
        lines.append(f"feed: sample page of user {uid}: {len(items)} rows, {more}")
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
        super().__init__()
        self.app = App(NAME, broker=place.broker, retry=SETTINGS.retry)
        cache = open_cache(place.cache, prefix=place.cache_prefix)
        self.client = workload.LocalFeed(build(self.app, open_storage(place.store), cache, SETTINGS))

    async def start(self) -> None:
        await self.app.start()

    async def stop(self) -> None:
        await self.app.stop()
        self.stats = apps_stats([self.app])


class RemoteFeed(_FeedPart):
    """The feed in its own process, driven and read over HTTP."""

    def __init__(self, process: ServiceProcess) -> None:
        super().__init__()
        self.process = process

    async def start(self) -> None:
        self.client = workload.HttpFeed(await self.process.start(), threshold=SETTINGS.threshold)

    async def stop(self) -> None:
        self.stats = await self.process.stop()


def local(place: Place) -> LocalFeed:
    return LocalFeed(place)


def remote(place: Place, spawn: Callable[[str], ServiceProcess]) -> RemoteFeed:
    return RemoteFeed(spawn(NAME))

"""What `herald demo` drives through the feed, and how it checks the outcome.

```python
expected = await drive(feed, random.Random(7), progress)   # a FeedService, or HttpFeed(client, ...)
problems = await check(feed, expected)                     # [] when all agree
for line in summary(feed): print(line)
```

`feed` is a FeedService of this process (its App publishes), or an
`HttpFeed`: the feed's HTTP API in another process (follows and likes
through `POST /feed-events`, articles through `POST /articles`), with the
producer faults (an article again under the same id, a feed event of an
unknown type) and the dead letters through a publishing endpoint beside it
(`POST /_demo/publish`, `GET /_demo/dead-letters`: what `herald demo`'s
service processes serve, examples/reference/serve.py).

The workload: users follow each other (a few "celebrities" above the
threshold, everyone else at or below it), then authors publish articles
and users like them, with producer retries (the same event id twice), a
repeated follow, and one feed event of an unknown type. `check` waits until
the feed caught up, then compares the stored figures with what was
published, reads every user's whole feed page by page (pages never repeat
or skip a row, newest first), and finds the poison event in dead letters.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from herald import DeadLetters

from .events import ARTICLE_TOPIC, FEED_TOPIC, ArticlePublished, FeedEventCreated
from .service import FeedPage, FeedService
from .storage import Cursor, FeedCounts, FeedRow

Progress = Callable[[int, int], None]  # (done, total)
CELEBRITIES = 3


@dataclass
class Expected:
    """What the feed must hold once it caught up."""

    follows: set[tuple[int, int]] = field(default_factory=set)
    articles: dict[int, int] = field(default_factory=dict)  # aid -> author
    likes: list[tuple[int, int, int]] = field(default_factory=list)  # (liker, liked, aid)
    poison_ids: list[str] = field(default_factory=list)
    threshold: int = 0
    users: int = 0
    published: int = 0

    def followers(self, author: int) -> list[int]:
        return [f for f, e in self.follows if e == author]

    def feed_of(self, uid: int) -> Counter[tuple[str, int, int]]:
        """What `uid` must see: (type, who, what) once each."""
        seen: Counter[tuple[str, int, int]] = Counter()
        for follower, followee in self.follows:
            if followee == uid:
                seen["follow", follower, uid] += 1
            if follower == uid:
                for aid, author in self.articles.items():
                    if author == followee:
                        seen["article", author, aid] += 1
        for liker, liked, aid in self.likes:
            if liked == uid:
                seen["like", liker, aid] += 1
        return seen

    def counts(self) -> tuple[int, int, int]:
        """(follows, push rows, pull rows)."""
        push = len(self.follows) + len(self.likes)
        pull = 0
        for author in self.articles.values():
            fans = len(self.followers(author))
            if fans > self.threshold:
                pull += 1
            else:
                push += fans
        return len(self.follows), push, pull


class FeedClient(Protocol):
    """What the workload needs from the feed, in this process or over HTTP."""

    threshold: int
    counts: Counter[str]  # the feed process's own work (push, pull, cache), as last seen
    last_counts: FeedCounts | None  # the tables' figures at the last stats()

    async def publish_feed_events(self, events: list[FeedEventCreated]) -> None: ...
    async def publish_feed_event(self, event: FeedEventCreated) -> str: ...
    async def publish_article(self, event: ArticlePublished, *, id: str | None = None) -> str: ...
    async def publish_untyped(self, topic: str, data: Mapping[str, Any], type: str) -> str: ...
    async def stats(self) -> FeedCounts: ...
    async def feed(self, uid: int, *, limit: int, before: Cursor | None = None) -> FeedPage: ...
    async def dead_letter_ids(self, topic: str) -> set[str]: ...


class LocalFeed:
    """A FeedService of this process; its App publishes."""

    def __init__(self, service: FeedService) -> None:
        self.service = service
        self.threshold = service.settings.threshold
        self.counts = service.counts  # the same Counter: always current
        self.last_counts: FeedCounts | None = None

    async def publish_feed_events(self, events: list[FeedEventCreated]) -> None:
        await self.service.app.publish_batch(FEED_TOPIC, events, key=lambda e: e.ext["follower"])

    async def publish_feed_event(self, event: FeedEventCreated) -> str:
        return await self.service.publish_feed_event(event)

    async def publish_article(self, event: ArticlePublished, *, id: str | None = None) -> str:
        return await self.service.app.publish(ARTICLE_TOPIC, event, key=str(event.uid), id=id)

    async def publish_untyped(self, topic: str, data: Mapping[str, Any], type: str) -> str:
        return await self.service.app.publish(topic, dict(data), type=type)

    async def stats(self) -> FeedCounts:
        self.last_counts = await self.service.stats()
        return self.last_counts

    async def feed(self, uid: int, *, limit: int, before: Cursor | None = None) -> FeedPage:
        return await self.service.feed(uid, limit=limit, before=before)

    async def dead_letter_ids(self, topic: str) -> set[str]:
        letters = await DeadLetters(self.service.app.broker, self.service.settings.retry).list(
            topic, limit=10_000)
        return {letter.event_id for letter in letters if letter.event_id}


class HttpFeed:
    """The feed's HTTP API (api.py) in another process, and the publishing endpoint
    beside it for what a well-behaved client cannot do (a producer's retry under the
    same event id, an event of a type the feed does not know)."""

    def __init__(self, client: httpx.AsyncClient, *, threshold: int) -> None:
        self.client = client
        self.threshold = threshold  # the served feed's FeedSettings.threshold
        self.counts: Counter[str] = Counter()
        self.last_counts: FeedCounts | None = None

    async def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = await self.client.post(path, json=body)
        if answer.is_error:
            raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text[:300]}")
        found: dict[str, Any] = answer.json()
        return found

    async def publish_feed_events(self, events: list[FeedEventCreated]) -> None:
        for event in events:
            await self.publish_feed_event(event)

    async def publish_feed_event(self, event: FeedEventCreated) -> str:
        published = await self._post("/feed-events", {"type": event.type, "ext": dict(event.ext)})
        return str(published["event_id"])

    async def publish_article(self, event: ArticlePublished, *, id: str | None = None) -> str:
        if id is None:
            body = {"uid": event.uid, "aid": event.aid, "title": event.title}
            return str((await self._post("/articles", body))["event_id"])
        published = await self._post("/_demo/publish", {
            "topic": ARTICLE_TOPIC, "type": ArticlePublished.__event_type__, "key": str(event.uid), "id": id,
            "data": {"uid": event.uid, "aid": event.aid, "title": event.title}})
        return str(published["id"])

    async def publish_untyped(self, topic: str, data: Mapping[str, Any], type: str) -> str:
        published = await self._post("/_demo/publish", {"topic": topic, "type": type, "data": dict(data)})
        return str(published["id"])

    async def stats(self) -> FeedCounts:
        answer = await self.client.get("/stats")
        answer.raise_for_status()
        found = answer.json()
        self.counts = Counter(found["this_process"])
        self.last_counts = FeedCounts(found["follows"], found["push_rows"], found["pull_rows"],
                                      found["events_applied"])
        return self.last_counts

    async def feed(self, uid: int, *, limit: int, before: Cursor | None = None) -> FeedPage:
        params = {"limit": str(limit)} | ({"cursor": str(before)} if before is not None else {})
        answer = await self.client.get(f"/users/{uid}/feed", params=params)
        answer.raise_for_status()
        page = answer.json()
        rows = [FeedRow(r["id"], r["kind"], r["uid"], r["type"], r["ext"], r["created_at"])
                for r in page["items"]]
        cursor = page["next_cursor"]
        return FeedPage(rows, Cursor.parse(cursor) if cursor else None)

    async def dead_letter_ids(self, topic: str) -> set[str]:
        answer = await self.client.get("/_demo/dead-letters", params={"topic": topic})
        answer.raise_for_status()
        return {letter["event_id"] for letter in answer.json()["dead_letters"] if letter["event_id"]}


def client_of(feed: FeedService | FeedClient) -> FeedClient:
    return LocalFeed(feed) if isinstance(feed, FeedService) else feed


async def drive(feed: FeedService | FeedClient, rng: random.Random,
                progress: Progress | None = None) -> Expected:
    """Publish the workload through `feed`; returns what the feed must end up with."""
    feed = client_of(feed)
    threshold = feed.threshold
    users = max(40, threshold + 12)
    expected = Expected(threshold=threshold, users=users)

    def fans_of(author: int, count: int) -> None:
        fans = rng.sample([u for u in range(1, users + 1) if u != author], count)
        expected.follows.update((fan, author) for fan in fans)

    # The threshold's edges: author 1 has threshold+1 followers (pull), author
    # CELEBRITIES+1 exactly threshold (push). Other celebrities more, the rest a few.
    fans_of(1, threshold + 1)
    for celebrity in range(2, CELEBRITIES + 1):
        fans_of(celebrity, rng.randint(threshold + 1, min(users - 1, threshold + 10)))
    fans_of(CELEBRITIES + 1, threshold)
    for author in range(CELEBRITIES + 2, users + 1):
        fans_of(author, rng.randint(0, min(threshold, 4)))
    articles = [(rng.randint(1, users), aid) for aid in range(1, users * 2 + 1)]
    likes = [(rng.randint(1, users), rng.randrange(len(articles))) for _ in range(users * 2)]
    total = len(expected.follows) + 1 + len(articles) + len(likes) + 1  # + repeat, + poison
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    # 1. Follows, and wait for them: push or pull depends on the followers an
    #    author has when the article is handled, and topics have no order between them.
    follow_events = [
        FeedEventCreated(type="follow", ext={"follower": str(f), "followee": str(e)})
        for f, e in sorted(expected.follows)
    ]
    for start in range(0, len(follow_events), 100):
        chunk = follow_events[start:start + 100]
        await feed.publish_feed_events(chunk)
        advance(len(chunk))
    again = follow_events[0]  # the same follow, as a new event: changes nothing
    await feed.publish_feed_event(again)
    advance()
    expected.published += len(follow_events) + 1
    await _wait(lambda c: c.follows >= len(expected.follows), feed, 120.0)

    # 2. Articles and likes; one article published twice with the same id (a producer retry).
    for n, (author, aid) in enumerate(articles):
        event = ArticlePublished(uid=author, aid=aid, title=f"article {aid}")
        event_id = await feed.publish_article(event)
        if n == 0:
            await feed.publish_article(event, id=event_id)
        expected.articles[aid] = author
        advance()
    for liker, index in likes:
        author, aid = articles[index]
        like = FeedEventCreated(type="like", ext={"liker": str(liker), "liked": str(author),
                                                  "biz": "article", "biz_id": str(aid)})
        await feed.publish_feed_event(like)
        expected.likes.append((liker, author, aid))
        advance()
    expected.published += len(articles) + 1 + len(likes)

    # 3. Poison: a feed event of a type nobody handles; it must end in dead letters.
    poison = await feed.publish_untyped(FEED_TOPIC, {"type": "poke", "ext": {"uid": "1"}},
                                        type=FeedEventCreated.__event_type__)
    expected.poison_ids.append(poison)
    expected.published += 1
    advance()
    return expected


async def _wait(ready: Callable[[FeedCounts], bool], feed: FeedClient, timeout: float) -> FeedCounts:
    deadline = time.monotonic() + timeout
    while True:
        counts = await feed.stats()
        if ready(counts) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.1)


async def check(feed: FeedService | FeedClient, expected: Expected, timeout: float = 120.0) -> list[str]:
    """Wait (up to `timeout`) for the feed to catch up; then the disagreements, [] if none."""
    feed = client_of(feed)
    follows, push, pull = expected.counts()
    counts = await _wait(
        lambda c: c.follows >= follows and c.push_rows >= push and c.pull_rows >= pull, feed, timeout
    )
    problems = []
    for name, want, got in (("follows", follows, counts.follows), ("pushed rows", push, counts.push_rows),
                            ("pulled rows", pull, counts.pull_rows)):
        if want != got:
            problems.append(f"feed: {name}: expected {want}, stored {got}")
    for uid in range(1, expected.users + 1):
        problems.extend(await _check_user(feed, expected, uid))
        if len(problems) > 20:
            problems.append("feed: more disagreements not shown")
            return problems
    # A poison event reaches the dead letters on its own time: wait for it too.
    deadline = time.monotonic() + timeout
    found = await feed.dead_letter_ids(FEED_TOPIC)
    while not set(expected.poison_ids) <= found and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        found = await feed.dead_letter_ids(FEED_TOPIC)
    for poison in expected.poison_ids:
        if poison not in found:
            problems.append(f"feed: poison event {poison} is not in the dead letters of {FEED_TOPIC}")
    return problems


async def _check_user(feed: FeedClient, expected: Expected, uid: int) -> list[str]:
    rows, before, ids = [], None, set()
    problems = []
    last: Cursor | None = None
    while True:
        page = await feed.feed(uid, limit=7, before=before)
        for row in page.rows:
            if row.id in ids:
                problems.append(f"feed: user {uid}: row {row.id} on two pages")
            if last is not None and not row.cursor < last:
                problems.append(f"feed: user {uid}: row {row.id} out of order")
            ids.add(row.id)
            last = row.cursor
        rows.extend(page.rows)
        if page.next_cursor is None:
            break
        before = page.next_cursor
    seen: Counter[tuple[str, int, int]] = Counter()
    for row in rows:
        if row.type == "article":
            seen["article", int(row.ext["uid"]), int(row.ext["aid"])] += 1
        elif row.type == "follow":
            seen["follow", int(row.ext["follower"]), int(row.ext["followee"])] += 1
        else:
            seen["like", int(row.ext["liker"]), int(row.ext["biz_id"])] += 1
    want = expected.feed_of(uid)
    if seen != want:
        missing, extra = want - seen, seen - want
        problems.append(
            f"feed: user {uid}: {sum(missing.values())} row(s) missing {sorted(missing)[:3]}, "
            f"{sum(extra.values())} extra {sorted(extra)[:3]}"
        )
    return problems


def summary(feed: FeedService | FeedClient, counts: Mapping[str, int] | None = None) -> list[str]:
    """Lines for the demo's summary: the tables' figures at the last `stats()`, and the
    feed process's own work: `counts` (its /stats `this_process`), else what `feed` saw."""
    c = feed.last_counts
    here = Counter(counts) if counts is not None else feed.counts
    threshold = feed.settings.threshold if isinstance(feed, FeedService) else feed.threshold
    lines = [f"feed: threshold {threshold} followers (push at or below, pull above)"]
    if c is not None:
        lines.append(f"feed: {c.follows} follows, {c.push_rows} pushed rows, {c.pull_rows} pulled rows, "
                     f"{c.processed} events applied")
    lines.append(
        f"feed: articles pushed {here['articles_pushed']}, pulled {here['articles_pulled']}; "
        f"likes {here['likes']}; duplicates ignored {here['duplicates']}; "
        f"followee cache hits {here['cache_hits']}, misses {here['cache_misses']}"
    )
    return lines

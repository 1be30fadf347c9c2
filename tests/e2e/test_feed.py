"""The feed flow of seed 000 end to end: events through the broker, rows in the
tables, reads through the HTTP API.

Two setups, named in the test id:
- `embedded`: the SQLite broker, SQLite tables, the followee cache in memory;
- `kafka-postgres-redis`: Kafka (a namespace of its own), PostgreSQL (a schema
  of its own, dropped afterwards), Redis (a key prefix of its own).
The services must be running (`bash scripts/services.sh up kafka` etc.); a
test fails, never skips, when one is not.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from examples.feed import build, open_cache, open_storage
from examples.feed.api import make_api
from examples.feed.service import FeedService, FeedSettings
from examples.feed.workload import HttpFeed, check, drive, summary
from examples.reference import publishing
from starlette.applications import Starlette
from starlette.routing import Mount

from herald import App, RetryPolicy
from tests.e2e._services import KAFKA, POSTGRES_DSN, REDIS_URL, asgi_client, drop, new_tag, require, until

RETRY = RetryPolicy(attempts=3, backoff=0.02, stages=1, stage_delay=0.5)


@dataclass
class Flow:
    app: App
    feed: FeedService
    http: httpx.AsyncClient


@pytest.fixture(params=["embedded", "kafka-postgres-redis"])
async def flow(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Flow]:
    settings = FeedSettings(threshold=3, retry=RETRY)
    tag = new_tag()
    if request.param == "embedded":
        app = App("feed", broker=f"sqlite:///{tmp_path / 'herald.db'}", retry=RETRY)
        storage = open_storage(f"sqlite:///{tmp_path / 'feed.db'}")
        cache = open_cache("memory://", ttl=60)
    else:
        require("kafka", "postgresql", "redis")
        app = App("feed", broker=f"kafka://{KAFKA}?namespace=feed{tag}.&partitions=2", retry=RETRY)
        storage = open_storage(f"{POSTGRES_DSN}?schema=feed_{tag}")
        cache = open_cache(REDIS_URL, prefix=f"feed{tag}:", ttl=60)
    feed = build(app, storage, cache, settings)
    await app.start()
    try:
        async with asgi_client(make_api(feed), "feed") as http:
            yield Flow(app, feed, http)
    finally:
        await app.stop()
        if request.param != "embedded":
            await drop(schemas=[f"feed_{tag}"], redis_prefix=f"feed{tag}:", kafka_namespace=f"feed{tag}.")


async def test_feed_workload_end_to_end(flow: Flow) -> None:
    """F1-F7 together: follows, articles on both sides of the threshold, likes, a
    producer retry and a poison event; every user's whole feed read page by page."""
    seen: list[tuple[int, int]] = []
    expected = await drive(flow.feed, random.Random(2026), lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1]  # the progress reached its total
    follows, push, pull = expected.counts()
    assert pull > 0 and push > len(expected.follows) + len(expected.likes)  # both modes ran
    problems = await check(flow.feed, expected, timeout=120)
    assert problems == []
    lines = summary(flow.feed)
    assert any(f"{follows} follows, {push} pushed rows, {pull} pulled rows" in line for line in lines)


async def test_feed_workload_over_http(flow: Flow) -> None:
    """The same workload through the feed's HTTP API (`HttpFeed`), as the demo drives a
    feed in a process of its own: follows, likes and articles through the API, the
    producer faults and the dead letters through the publishing endpoint beside it."""
    served = Starlette(routes=[*publishing.routes(flow.app), Mount("/", app=make_api(flow.feed))])
    async with asgi_client(served, "feed") as http:
        client = HttpFeed(http, threshold=flow.feed.settings.threshold)
        expected = await drive(client, random.Random(11), None)
        follows, push, pull = expected.counts()
        assert await check(client, expected, timeout=120) == []
        assert expected.poison_ids and await client.dead_letter_ids("feed_event") >= set(expected.poison_ids)
        lines = summary(client)  # the figures and the feed's own counts, from its GET /stats
        assert any(f"{follows} follows, {push} pushed rows, {pull} pulled rows" in line for line in lines)
        assert any("duplicates ignored 1;" in line for line in lines), lines  # the producer's retry
        given = summary(client, counts={"likes": 99})[-1]  # a feed process's counts, handed in
        assert given.startswith("feed: articles pushed 0, pulled 0; likes 99"), given
        for body, status, message in [
            (b"{not json", 400, "not valid JSON"),
            (b"[1]", 400, "JSON object"),
            (b'{"type": "x.y", "data": {}}', 422, "topic must be"),
            (b'{"topic": "t", "data": {}}', 422, "type must be"),
            (b'{"topic": "t", "type": "x.y", "data": [1]}', 422, "data must be a JSON object"),
            (b'{"topic": "t", "raw_b64": "***"}', 422, ""),
            (b'{"topic": "t", "raw_b64": "AA==", "headers": {"a": 1}}', 422, "headers must be"),
        ]:
            answer = await http.post(publishing.PUBLISH_PATH, content=body)
            assert answer.status_code == status and message in answer.json()["error"], (body, answer.text)
        assert (await http.get(publishing.DEAD_LETTERS_PATH)).status_code == 400


async def test_feed_http_api(flow: Flow) -> None:
    """Follow, publish and read through HTTP; the threshold decides push or pull;
    the cursor pages without repeats; garbage gets a clear 4xx."""
    http = flow.http
    for fan in (11, 12, 13, 14):  # author 1: four followers, above the threshold of 3
        response = await http.post("/follows", json={"follower": fan, "followee": 1})
        assert response.status_code == 201, response.text
        assert response.json()["new"] is True
    for fan in (11, 12):  # author 2: two followers, pushed
        assert (await http.post("/follows", json={"follower": fan, "followee": 2})).status_code == 201
    assert (await http.post("/follows", json={"follower": 11, "followee": 1})).json()["new"] is False
    assert (await http.get("/users/11/followees")).json() == {"uid": 11, "followees": [1, 2]}

    for aid in range(1, 6):
        response = await http.post("/articles", json={"uid": 1 + aid % 2, "aid": aid, "title": f"a{aid}"})
        assert response.status_code == 202, response.text
    response = await http.post("/feed-events", json={
        "type": "like", "ext": {"liker": "12", "liked": "11", "biz": "article", "biz_id": "3"}})
    assert response.status_code == 202, response.text

    async def caught_up() -> bool:
        stats = (await http.get("/stats")).json()
        # follow notices 6, author 2's three articles to two fans, one like
        return bool(stats["pull_rows"] == 2 and stats["push_rows"] == 6 + 3 * 2 + 1)

    await until(caught_up, "the feed")
    rows, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/users/11/feed", params=params)).json()
        rows.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(int(r["ext"]["aid"]) for r in rows if r["type"] == "article") == [1, 2, 3, 4, 5]
    kinds = {(r["type"], r["kind"]) for r in rows}
    assert kinds == {("article", "pull"), ("article", "push"), ("like", "push")}
    assert len({r["id"] for r in rows}) == len(rows) == 6
    keys = [(r["created_at"], r["id"]) for r in rows]
    assert keys == sorted(keys, reverse=True)
    follow_notices = (await http.get("/users/1/feed")).json()["items"]
    assert sorted(int(r["ext"]["follower"]) for r in follow_notices) == [11, 12, 13, 14]

    # Garbage in: a clear 4xx that says what is wrong, nothing published.
    bad = [
        ("post", "/follows", b"{not json", 400, "not valid JSON"),
        ("post", "/follows", b"[1, 2]", 400, "JSON object"),
        ("post", "/follows", b'{"follower": 1}', 422, "missing field 'followee'"),
        ("post", "/follows", b'{"follower": "1", "followee": 2}', 422, "follower must be a positive"),
        ("post", "/follows", b'{"follower": true, "followee": 2}', 422, "follower must be a positive"),
        ("post", "/follows", b'{"follower": 3, "followee": 3}', 422, "cannot follow themselves"),
        ("post", "/articles", b'{"uid": 1}', 422, "missing field 'aid'"),
        ("post", "/articles", b'{"uid": 1, "aid": -4}', 422, "aid must be a positive"),
        ("post", "/articles", b'{"uid": 1, "aid": 4, "title": 5}', 422, "title must be a string"),
        ("post", "/articles", b"\xff\xfe", 400, "not valid JSON"),
        ("post", "/feed-events", b'{"type": "poke", "ext": {}}', 422, "unknown feed event type 'poke'"),
        ("post", "/feed-events", b'{"type": "like", "ext": {"liker": 1}}', 422, "strings to strings"),
        ("post", "/feed-events", b'{"type": "like", "ext": {"liker": "1"}}', 422, "liked"),
        ("post", "/feed-events", b'{"ext": {}}', 422, "missing field 'type'"),
        ("get", "/users/abc/feed", None, 400, "uid in the path"),
        ("get", "/users/0/feed", None, 400, "uid in the path"),
        ("get", "/users/1/feed?limit=0", None, 400, "limit must be"),
        ("get", "/users/1/feed?limit=x", None, 400, "limit must be"),
        ("get", "/users/1/feed?limit=100000", None, 400, "limit must be"),
        ("get", "/users/1/feed?cursor=yesterday", None, 400, "bad cursor"),
        ("get", "/users/-5/followees", None, 400, "uid in the path"),
    ]
    for method, path, body, status, message in bad:
        if method == "post":
            response = await http.post(path, content=body, headers={"content-type": "application/json"})
        else:
            response = await http.get(path)
        assert response.status_code == status, (path, body, response.text)
        assert message in response.json()["error"], (path, body, response.text)
    assert (await http.get("/nowhere")).status_code == 404
    assert (await http.get("/follows")).status_code == 405
    # An id nobody knows is a user with an empty feed: the feed does not own users.
    assert (await http.get("/users/987654/feed")).json() == {"items": [], "next_cursor": None}
    stats = (await http.get("/stats")).json()
    assert stats["pull_rows"] == 2 and stats["push_rows"] == 13  # the garbage changed nothing

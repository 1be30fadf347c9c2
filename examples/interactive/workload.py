"""A workload for `herald demo`: reads (some delivered twice), likes, cancels
and collects; then a check that every figure agrees with what was driven.

`drive`, `check` and `summary` take the service itself (one process) or an
`HttpInteractive` client (the service in another process): both have the
same methods.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from .events import BIZ_ARTICLE
from .service import InteractiveService, NotFound
from .storage import Counters

Progress = Callable[[int, int], None]


class Interactive(Protocol):
    async def read(self, aid: int, uid: int, *, event_id: str | None = None) -> str: ...
    async def like(self, biz: str, biz_id: int, uid: int) -> bool: ...
    async def cancel_like(self, biz: str, biz_id: int, uid: int) -> bool: ...
    async def collect(self, biz: str, biz_id: int, uid: int) -> bool: ...
    async def cancel_collect(self, biz: str, biz_id: int, uid: int) -> bool: ...
    async def counters(self, biz: str, biz_id: int) -> Counters: ...
    async def all_counters(self) -> list[Counters]: ...
    async def stats(self) -> dict[str, Any]: ...


class HttpInteractive:
    """The service's HTTP API with the service's own method names."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.last_stats: dict[str, Any] = {}

    async def read(self, aid: int, uid: int, *, event_id: str | None = None) -> str:
        body: dict[str, Any] = {"uid": uid} | ({"event_id": event_id} if event_id else {})
        answer = await self.client.post(f"/articles/{aid}/read", json=body)
        answer.raise_for_status()
        return str(answer.json()["event_id"])

    async def _act(self, action: str, biz: str, biz_id: int, uid: int) -> bool:
        answer = await self.client.post(f"/interactive/{biz}/{biz_id}/{action}", json={"uid": uid})
        answer.raise_for_status()
        return bool(answer.json()["changed"])

    async def like(self, biz: str, biz_id: int, uid: int) -> bool:
        return await self._act("like", biz, biz_id, uid)

    async def cancel_like(self, biz: str, biz_id: int, uid: int) -> bool:
        return await self._act("unlike", biz, biz_id, uid)

    async def collect(self, biz: str, biz_id: int, uid: int) -> bool:
        return await self._act("collect", biz, biz_id, uid)

    async def cancel_collect(self, biz: str, biz_id: int, uid: int) -> bool:
        return await self._act("uncollect", biz, biz_id, uid)

    async def counters(self, biz: str, biz_id: int) -> Counters:
        answer = await self.client.get(f"/interactive/{biz}/{biz_id}")
        if answer.status_code == 404:
            raise NotFound(answer.json()["error"])
        answer.raise_for_status()
        return Counters(**answer.json())

    async def all_counters(self) -> list[Counters]:
        answer = await self.client.get(f"/counters/{BIZ_ARTICLE}")
        answer.raise_for_status()
        return [Counters(**row) for row in answer.json()]

    async def stats(self) -> dict[str, Any]:
        answer = await self.client.get("/stats")
        answer.raise_for_status()
        self.last_stats = answer.json()
        return self.last_stats


@dataclass
class Expected:
    """What the workload did, per article."""

    articles: int
    reads: Counter[int] = field(default_factory=Counter)
    likes: dict[int, set[int]] = field(default_factory=dict)
    collects: dict[int, set[int]] = field(default_factory=dict)
    touched: set[int] = field(default_factory=set)  # articles that must have a row
    duplicates: int = 0  # read events published a second time with the same id
    actions: int = 0

    def counters(self, aid: int) -> Counters:
        return Counters(BIZ_ARTICLE, aid, self.reads[aid], len(self.likes.get(aid, ())),
                        len(self.collects.get(aid, ())))


async def drive(
    target: Interactive,
    rng: random.Random,
    progress: Progress | None = None,
    *,
    articles: int = 30,
    users: int = 20,
    actions: int = 600,
) -> Expected:
    """Random reads, likes, cancels and collects; 1 read in 10 is sent twice with
    the same event id (a duplicate delivery), and a like may hit a user who
    already liked (the seed would count it twice)."""
    expected = Expected(articles)
    for n in range(actions):
        aid, uid, roll = rng.randint(1, articles), rng.randint(1, users), rng.random()
        if roll < 0.6:
            event_id = await target.read(aid, uid)
            expected.reads[aid] += 1
            expected.touched.add(aid)
            if rng.random() < 0.1:
                await target.read(aid, uid, event_id=event_id)
                expected.duplicates += 1
        elif roll < 0.75:
            if await target.like(BIZ_ARTICLE, aid, uid):
                expected.touched.add(aid)
            expected.likes.setdefault(aid, set()).add(uid)
        elif roll < 0.82:
            await target.cancel_like(BIZ_ARTICLE, aid, uid)
            expected.likes.setdefault(aid, set()).discard(uid)
        elif roll < 0.95:
            if await target.collect(BIZ_ARTICLE, aid, uid):
                expected.touched.add(aid)
            expected.collects.setdefault(aid, set()).add(uid)
        else:
            await target.cancel_collect(BIZ_ARTICLE, aid, uid)
            expected.collects.setdefault(aid, set()).discard(uid)
        expected.actions += 1
        if progress is not None:
            progress(n + 1, actions)
    return expected


async def check(target: Interactive, expected: Expected, timeout: float = 60.0) -> list[str]:
    """Wait until the consumer has counted every read, then compare the table,
    the cache (a miss, then a hit) and herald's counts with the workload."""
    problems: list[str] = []
    want = sum(expected.reads.values())
    deadline = time.monotonic() + timeout
    while True:
        got = sum(c.read_cnt for c in await target.all_counters())
        if got >= want or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # a late duplicate would show now
    stored = {c.biz_id: c for c in await target.all_counters()}
    got = sum(c.read_cnt for c in stored.values())
    if got != want:
        problems.append(f"interactive: {got} reads counted, {want} read events published "
                        f"({expected.duplicates} of them delivered twice)")
    for aid in range(1, expected.articles + 1):
        want_counters = expected.counters(aid)
        if aid not in expected.touched:
            if aid in stored:
                problems.append(f"interactive: article {aid} has counters, nothing touched it")
            continue
        if stored.get(aid) != want_counters:
            problems.append(f"interactive: table has {stored.get(aid)}, expected {want_counters}")
        for path in ("cache miss", "cache hit"):
            try:
                seen = await target.counters(BIZ_ARTICLE, aid)
            except NotFound:
                problems.append(f"interactive: article {aid} not found through the cache ({path})")
                break
            if seen != want_counters:
                problems.append(f"interactive: {path} gave {seen}, expected {want_counters}")
    stats = await target.stats()
    for name, counts in stats["subscribers"].items():
        if counts.get("dead_lettered"):
            problems.append(f"interactive: {counts['dead_lettered']} dead letter(s) in {name}")
    return problems


def summary(target: InteractiveService | HttpInteractive) -> list[str]:
    """Lines for the demo's summary (after `check`, which fetched the figures)."""
    if isinstance(target, InteractiveService):
        figures: dict[str, Any] = vars(target.figures)
        subscribers: dict[str, Any] = target.app.stats()
    else:
        figures = target.last_stats.get("consumer", {})
        subscribers = target.last_stats.get("subscribers", {})
    lines = [
        f"interactive: {figures.get('reads_seen', 0)} read events in {figures.get('batches', 0)} "
        f"batches, {figures.get('reads_counted', 0)} counted "
        f"({figures.get('reads_seen', 0) - figures.get('reads_counted', 0)} repeats ignored)",
        f"interactive cache: {figures.get('cache_hits', 0)} hits, {figures.get('cache_misses', 0)} "
        f"misses, {figures.get('cache_errors', 0)} errors",
    ]
    for name, counts in subscribers.items():
        lines.append(f"interactive {name.split(':')[0]}: " +
                     ", ".join(f"{k} {v}" for k, v in counts.items()))
    return lines

"""The interactive service: read events counted in batches, likes and collects
per user, counters read through the cache.

```python
app = App("interactive", broker="sqlite:///herald.db")
service = build(app, open_storage("sqlite:///interactive.db"), MemoryCountersCache())
await app.start()                       # opens the storage, starts the batch consumer
await service.read(aid=42, uid=7)       # publishes ArticleRead to article_read_event
await service.like("article", 42, uid=7)
await service.counters("article", 42)   # Counters(read_cnt=1, like_cnt=1, ...)
```

Why the read event ids are recorded in the counters' own transaction rather
than with herald's `dedup=True`: herald records handled ids after the
handler returns, in another store. A crash (or a failing cache call, or a
lost ack) between the counters' commit and that record redelivers the
batch, and it would be counted twice; and two copies of one event inside
one batch would both pass the check. One transaction for the ids and the
counters makes each read count exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from herald import App, Batch, Context, RetryPolicy, Scheduler

from .cache import CountersCache
from .events import BIZ_ARTICLE, READ_TOPIC, ArticleRead
from .storage import Counters, Field, Increment, InteractiveStorage, Read

log = logging.getLogger("examples.interactive")


@dataclass(frozen=True)
class InteractiveSettings:
    """The seed's figures: batches of 10 events or 1 second, a 15 minute cache TTL."""

    cache_ttl: float = 15 * 60
    batch: Batch = field(default_factory=lambda: Batch(size=10, timeout=1.0))
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(attempts=3, backoff=0.05, stages=3, stage_delay=1.0)
    )
    group: str = "interactive"
    # How long a counted read's id is kept against redeliveries (an hourly job forgets older ones).
    read_ids_ttl: float = 7 * 24 * 3600

    def __post_init__(self) -> None:
        if not self.cache_ttl > 0:
            raise ValueError(f"cache_ttl must be > 0 seconds, got {self.cache_ttl}")
        if not self.read_ids_ttl > 0:
            raise ValueError(f"read_ids_ttl must be > 0 seconds, got {self.read_ids_ttl}")


class NotFound(LookupError):
    """Nothing ever happened to this item: no counters."""


@dataclass
class Figures:
    """What this process's consumer did, for the summary."""

    batches: int = 0
    reads_seen: int = 0
    reads_counted: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_errors: int = 0


class InteractiveService:
    def __init__(
        self, app: App, storage: InteractiveStorage, cache: CountersCache, settings: InteractiveSettings
    ) -> None:
        self.app = app
        self.storage = storage
        self.cache = cache
        self.settings = settings
        self.figures = Figures()

    # -- I1: reading publishes a read event -------------------------------------------------
    async def read(self, aid: int, uid: int, *, event_id: str | None = None) -> str:
        """Publish that `uid` read article `aid`; returns the event id. The article id
        is the key, so one article's reads stay in order and in one batch lane."""
        return await self.app.publish(
            READ_TOPIC, ArticleRead(aid=aid, uid=uid), key=f"{BIZ_ARTICLE}:{aid}", id=event_id
        )

    # -- I4: the batch consumer --------------------------------------------------------------
    async def count_reads(self, events: Sequence[ArticleRead], ctx: Context) -> None:
        """Count a batch: all increments in one transaction with the event ids (so a
        redelivery counts nothing), then the cache. Raising makes herald retry the
        whole batch, then split it to find a bad event; a batch is never skipped."""
        reads = [Read(envelope.id, BIZ_ARTICLE, event.aid)
                 for envelope, event in zip(ctx.envelopes, events, strict=True)]
        increments = await self.storage.add_reads(reads)
        self.figures.batches += 1
        self.figures.reads_seen += len(reads)
        self.figures.reads_counted += sum(i.delta for i in increments)
        await self._touch_cache(increments)

    # -- I5: idempotent per user --------------------------------------------------------------
    async def like(self, biz: str, biz_id: int, uid: int) -> bool:
        """True when it counted (the user had not liked it); liking again is a no-op."""
        return await self._changed(await self.storage.like(biz, biz_id, uid), biz, biz_id, "like_cnt", 1)

    async def cancel_like(self, biz: str, biz_id: int, uid: int) -> bool:
        changed = await self.storage.cancel_like(biz, biz_id, uid)
        return await self._changed(changed, biz, biz_id, "like_cnt", -1)

    async def collect(self, biz: str, biz_id: int, uid: int) -> bool:
        changed = await self.storage.collect(biz, biz_id, uid)
        return await self._changed(changed, biz, biz_id, "collect_cnt", 1)

    async def cancel_collect(self, biz: str, biz_id: int, uid: int) -> bool:
        changed = await self.storage.cancel_collect(biz, biz_id, uid)
        return await self._changed(changed, biz, biz_id, "collect_cnt", -1)

    async def _changed(self, changed: bool, biz: str, biz_id: int, name: Field, delta: int) -> bool:
        if changed:
            await self._touch_cache([Increment(biz, biz_id, name, delta)])
        return changed

    async def _touch_cache(self, increments: Sequence[Increment]) -> None:
        """I3: increment the hashes that exist. The table is already committed, so a
        cache failure must not fail the caller (a retry would count nothing and fix
        nothing): drop the hashes instead, or let their TTL end them."""
        if not increments:
            return
        try:
            await self.cache.incr_if_present(increments)
        except Exception as exc:
            self.figures.cache_errors += 1
            log.warning("cache increment failed (%s); dropping the cached items", exc)
            try:
                await self.cache.delete(sorted({(i.biz, i.biz_id) for i in increments}))
            except Exception as again:
                log.warning("cache delete failed too (%s); the TTL will end them", again)

    # -- reading counters (I3: miss -> table -> write back with a TTL) -------------------------
    async def counters(self, biz: str, biz_id: int) -> Counters:
        """The item's counters, from the cache or else the table. Raises NotFound."""
        cached = await self.cache.get(biz, biz_id)
        if cached is not None:
            self.figures.cache_hits += 1
            return cached
        self.figures.cache_misses += 1
        stored = await self.storage.get(biz, biz_id)
        if stored is None:
            raise NotFound(f"no counters for {biz} {biz_id}: nobody read, liked or collected it yet")
        await self.cache.put(stored, self.settings.cache_ttl)
        return stored

    async def stored_counters(self, biz: str, biz_id: int) -> Counters:
        """The table's counters, bypassing the cache. Raises NotFound."""
        stored = await self.storage.get(biz, biz_id)
        if stored is None:
            raise NotFound(f"no counters for {biz} {biz_id}: nobody read, liked or collected it yet")
        return stored

    async def all_counters(self) -> list[Counters]:
        return await self.storage.all_counters()

    async def stats(self) -> dict[str, object]:
        """What the consumer did, and herald's counts per subscriber (JSON-ready)."""
        return {"consumer": vars(self.figures), "subscribers": self.app.stats()}

    async def user_state(self, biz: str, biz_id: int, uid: int) -> dict[str, bool]:
        liked, collected = await self.storage.user_state(biz, biz_id, uid)
        return {"liked": liked, "collected": collected}


def build(
    app: App,
    storage: InteractiveStorage,
    cache: CountersCache,
    settings: InteractiveSettings | None = None,
    *,
    own_resources: bool = True,
) -> InteractiveService:
    """Wire the service into `app`: the batch consumer of article_read_event, and
    (with `own_resources`) the storage and cache opened and closed with the App."""
    settings = settings or InteractiveSettings()
    service = InteractiveService(app, storage, cache, settings)

    @app.subscriber(READ_TOPIC, group=settings.group, batch=settings.batch, retry=settings.retry)
    async def count_reads(events: list[ArticleRead], ctx: Context) -> None:
        await service.count_reads(events, ctx)

    @Scheduler(app).every(3600, name="interactive-forget-read-ids")
    async def forget_read_ids() -> None:
        gone = await storage.forget_reads(time.time() - settings.read_ids_ttl)
        if gone:
            log.info("forgot %d counted read ids older than %.0f s", gone, settings.read_ids_ttl)

    if own_resources:
        app.on_startup(storage.open)

        @app.on_shutdown
        async def close() -> None:
            await storage.close()
            await cache.close()

    return service

"""The analytics service (seed 002): counts todo events by type and over time.

A batch consumer: each batch is counted in one transaction that also
records the batch's event ids, so an event is counted exactly once however
often the broker delivers it (E2), and a batch that fails is retried whole
(nothing of it was committed). Time buckets are minutes of the event's own
time (when it happened), not of its arrival.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from herald import App, Batch, Context, RetryPolicy

from .events import TOPIC, TodoEvent
from .storage import AnalyticsStorage, Counted, MinuteCount, minute_of, open_storage


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    topic: str = TOPIC
    group: str = "analytics"
    batch: Batch = field(default_factory=lambda: Batch(size=50, timeout=0.2))
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(attempts=3, backoff=0.05, stages=1,
                                                                    stage_delay=0.5))


class AnalyticsService:
    """Safe from several tasks. `by_type`, `by_minute`, `batches`, `duplicates`
    are this process's work; the tables hold everyone's."""

    def __init__(self, app: App, storage: AnalyticsStorage, settings: AnalyticsSettings) -> None:
        self.app = app
        self.storage = storage
        self.settings = settings
        self.by_type: Counter[str] = Counter()
        self.by_minute: Counter[str] = Counter()
        self.batches = 0
        self.duplicates = 0

    async def count(self, events: list[Counted]) -> int:
        """Count a batch; returns how many were new."""
        fresh = await self.storage.count_events(events)
        self.batches += 1
        self.duplicates += len(events) - len(fresh)
        for event in fresh:
            self.by_type[event.type] += 1
            self.by_minute[event.minute] += 1
        return len(fresh)

    async def counts(self) -> dict[str, int]:
        """Events counted per type (all processes)."""
        return await self.storage.counts_by_type()

    async def timeline(self, type: str | None = None, since: str | None = None) -> list[MinuteCount]:
        """Counts per minute and type, oldest first."""
        return await self.storage.counts_by_minute(type, since)


# The demo's old name for the service's figures.
Analytics = AnalyticsService


def build(app: App, storage: AnalyticsStorage, settings: AnalyticsSettings | None = None) -> AnalyticsService:
    """Subscribe `app` to the todo events in batches; storage opens and closes with the app."""
    settings = settings or AnalyticsSettings()
    service = AnalyticsService(app, storage, settings)

    @app.subscriber(settings.topic, group=settings.group, batch=settings.batch, retry=settings.retry)
    async def count(events: list[TodoEvent], ctx: Context) -> None:
        await service.count([Counted(e.id, e.type, minute_of(e.time_datetime)) for e in ctx.envelopes])

    app.on_startup(storage.open)
    app.on_shutdown(storage.close)
    return service


def make_app(broker: str) -> tuple[App, AnalyticsService]:
    """Compatibility for the current examples/demo.py: the service on SQLite in memory."""
    app = App("analytics", broker=broker)
    return app, build(app, open_storage("memory://"))

"""The analytics service: counts todo events by type and by minute (seed 002)."""

from __future__ import annotations

from collections import Counter

from herald import App, Batch, Context

from .events import TOPIC, TodoEvent


class Analytics:
    def __init__(self) -> None:
        self.by_type: Counter[str] = Counter()
        self.by_minute: Counter[str] = Counter()
        self.batches = 0


def make_app(broker: str) -> tuple[App, Analytics]:
    app = App("analytics", broker=broker)
    stats = Analytics()

    @app.subscriber(TOPIC, group="analytics", batch=Batch(size=50, timeout=0.2), dedup=True)
    async def count(events: list[TodoEvent], ctx: Context) -> None:
        stats.batches += 1
        for envelope in ctx.envelopes:
            stats.by_type[envelope.type] += 1
            stats.by_minute[(envelope.time or "")[:16]] += 1

    return app, stats

"""A subscriber: what `@app.subscriber(...)` declared (run by the Consumer in
subscription.py), its batches, and the handler and middleware types."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from herald.codecs import PayloadDecoder
from herald.context import Context
from herald.errors import ConfigError
from herald.retry import RetryPolicy

Handler = Callable[[Context], Awaitable[None]]
Middleware = Callable[[Handler], Handler]


@dataclass(frozen=True, slots=True)
class Batch:
    """Close a batch at `size` events or `timeout` seconds after its first one."""

    size: int = 10
    timeout: float = 1.0

    def __post_init__(self) -> None:
        if self.size < 1 or self.timeout <= 0:
            raise ConfigError(f"Batch needs size >= 1 and timeout > 0, got {self.size}, {self.timeout}")



@dataclass(slots=True)
class Subscriber:
    """One `@app.subscriber(...)` declaration."""

    topic: str
    group: str
    fn: Callable[..., Awaitable[Any]]
    decoder: PayloadDecoder
    takes_context: bool
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    batch: Batch | None = None
    concurrency: int = 1
    max_in_flight: int = 1000
    dedup: bool = False
    cluster: str | None = None
    # Counts over the App's whole life (across stops and starts), kept by its Consumers.
    stats: dict[str, int] = field(
        default_factory=lambda: {"handled": 0, "retried": 0, "dead_lettered": 0, "skipped": 0}
    )

    @property
    def name(self) -> str:
        """`group:topic:handler`, and `@cluster` for a named cluster's broker."""
        name = f"{self.group}:{self.topic}:{getattr(self.fn, '__qualname__', 'handler')}"
        return name if self.cluster is None else f"{name}@{self.cluster}"


def inspect_handler(fn: Callable[..., Any]) -> tuple[Any, bool]:
    """(annotation of the event parameter, whether the handler takes a Context)."""
    if not inspect.iscoroutinefunction(fn):
        raise ConfigError(f"handler {fn!r} must be an `async def` function")
    params = list(inspect.signature(fn, eval_str=True).parameters.values())
    if not 1 <= len(params) <= 2:
        raise ConfigError(
            f"handler {fn.__qualname__} must take (event) or (event, ctx), "
            f"it takes {len(params)} parameters"
        )
    annotation = params[0].annotation
    if annotation is inspect.Parameter.empty:
        annotation = Any
    return annotation, len(params) == 2

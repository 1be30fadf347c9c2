"""What a handler knows about the message it handles, and how it publishes more.

While a handler runs, the event it handles is the "current" event of its
task: anything published then, through `ctx.publish` or `app.publish`,
carries the same correlation id and names the current event as its cause.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from herald.event import Envelope, user_headers
from herald.retry import INTERNAL_HEADERS

if TYPE_CHECKING:
    from herald.app import App

current_envelope: ContextVar[Envelope | None] = ContextVar("herald_current_envelope", default=None)


@dataclass(slots=True)
class Context:
    """Passed to handlers (`async def handle(event: T, ctx: Context)`).

    For a batch handler, `envelopes` holds every event of the batch and
    `envelope` the first.
    """

    app: App
    topic: str
    group: str
    envelope: Envelope
    event: Any = None  # the decoded event (a list for batch handlers)
    key: str | None = None
    raw_headers: Mapping[str, str] = field(default_factory=dict)  # as on the wire
    partition: int = 0
    offset: int = 0
    attempt: int = 1  # in-process attempt, from 1
    retry_count: int = 0  # retry stage, 0 on first delivery
    envelopes: list[Envelope] = field(default_factory=list)
    logger: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The publisher's own headers: no CloudEvents attributes, no herald bookkeeping."""
        return {
            name: value
            for name, value in user_headers(self.raw_headers).items()
            if name not in INTERNAL_HEADERS
        }

    @property
    def event_id(self) -> str:
        return self.envelope.id

    @property
    def event_type(self) -> str:
        return self.envelope.type

    @property
    def subject(self) -> str | None:
        return self.envelope.subject

    @property
    def correlation_id(self) -> str | None:
        return self.envelope.correlationid

    @property
    def causation_id(self) -> str | None:
        return self.envelope.causationid

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        if self.logger is None:
            self.logger = _EventLogger(
                logging.getLogger(f"herald.{self.app.name}"),
                {
                    "event_type": self.envelope.type,
                    "event_id": self.envelope.id,
                    "aggregate_id": self.envelope.subject,
                    "correlation_id": self.envelope.correlationid,
                    "topic": self.topic,
                    "group": self.group,
                },
            )
        return self.logger

    async def publish(self, topic: str, event: Any, **options: Any) -> str:
        """Publish as `App.publish`, carrying this event's correlation; returns the id."""
        token = current_envelope.set(self.envelope)
        try:
            return await self.app.publish(topic, event, **options)
        finally:
            current_envelope.reset(token)


class _EventLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the event's fields to a record and keeps the caller's own `extra=`
    (the standard adapter replaces them before Python 3.13)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs

"""Where a consumer's failed deliveries go (used by subscription.py): the next
retry stage, or the dead letters, with the failure's headers. The record is
published there first and acknowledged after; a publish that fails is
retried with backoff, never dropped, and on shutdown the delivery is given
back for redelivery instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from herald import retry as h
from herald.brokers.base import Broker, Delivery, Message
from herald.event import utc_now_iso
from herald.subscriber import Subscriber

log = logging.getLogger("herald.consumer")


class FailureRoutes:
    """Retry stages and dead letters of one subscriber on one broker.
    `sleep(seconds)` waits between publish attempts and returns False when
    the consumer is stopping."""

    def __init__(self, sub: Subscriber, broker: Broker, sleep: Callable[[float], Awaitable[bool]]) -> None:
        self._sub = sub
        self._policy = sub.retry
        self._broker = broker
        self._stats = sub.stats
        self._sleep = sleep

    async def fail(
        self, delivery: Delivery, exc: Exception, retry_count: int, attempts: int, first: str
    ) -> None:
        """After the in-process attempts: the next retry stage, or the dead letters."""
        if retry_count >= self._policy.stages:
            await self.dead_letter(delivery, exc, attempts, "handler-error", first)
            return
        headers = self._failure_headers(delivery, exc, attempts, "handler-error", first)
        headers[h.RETRY_COUNT] = str(retry_count + 1)
        headers[h.RETRY_GROUP] = self._sub.group
        message = Message(
            self._policy.retry_topic(self._sub.topic), delivery.body, headers, delivery.key,
            deliver_at=time.time() + self._policy.stage_delay,
        )
        if await self._move(delivery, message):
            self._stats["retried"] += 1
            log.info(
                "retry stage %d: %s from %s (group %s): %s: %s",
                retry_count + 1, delivery.headers.get("ce_id", "?"), self._sub.topic, self._sub.group,
                type(exc).__name__, exc,
                extra=self._log_fields(delivery, "retry_stage", "handler-error", attempts, exc),
            )

    async def dead_letter(
        self,
        delivery: Delivery,
        exc: BaseException,
        attempts: int,
        reason: str,
        first: str | None = None,
    ) -> None:
        headers = self._failure_headers(delivery, exc, attempts, reason, first)
        headers.pop(h.RETRY_GROUP, None)
        message = Message(
            self._policy.dead_letter_topic(self._sub.topic), delivery.body, headers, delivery.key
        )
        if await self._move(delivery, message):
            self._stats["dead_lettered"] += 1
            log.warning(
                "dead letter: %s from %s (group %s): %s: %s",
                delivery.headers.get("ce_id", "?"), self._sub.topic, self._sub.group,
                type(exc).__name__, exc,
                extra=self._log_fields(delivery, "dead_lettered", reason, attempts, exc),
            )

    def _log_fields(
        self, delivery: Delivery, outcome: str, reason: str, attempts: int, exc: BaseException
    ) -> dict[str, object]:
        """Structured fields for log records (the JSON formatter prints them)."""
        headers = delivery.headers
        return {
            "event_type": headers.get("ce_type"), "event_id": headers.get("ce_id"),
            "aggregate_id": headers.get("ce_subject"), "correlation_id": headers.get("ce_correlationid"),
            "topic": self._sub.topic, "group": self._sub.group, "outcome": outcome, "reason": reason,
            "attempt": attempts, "error_type": type(exc).__name__,
        }

    def _failure_headers(
        self, delivery: Delivery, exc: BaseException, attempts: int, reason: str, first: str | None
    ) -> dict[str, str]:
        now = utc_now_iso()
        headers = dict(delivery.headers)
        headers.setdefault(h.ORIGINAL_TOPIC, self._sub.topic)
        headers.setdefault(h.ORIGINAL_PARTITION, str(delivery.partition))
        headers.setdefault(h.ORIGINAL_OFFSET, str(delivery.offset))
        headers.setdefault(h.FIRST_FAILURE, first or now)
        headers[h.LAST_FAILURE] = now
        headers[h.ERROR_TYPE] = type(exc).__name__
        headers[h.ERROR_MESSAGE] = str(exc)[:2000]
        headers[h.ATTEMPTS] = str(h.header_count(headers.get(h.ATTEMPTS)) + attempts)
        headers[h.REASON] = reason
        headers[h.GROUP] = self._sub.group
        headers[h.RETRY_TOPIC] = self._policy.retry_topic(self._sub.topic)
        return headers

    async def _move(self, delivery: Delivery, message: Message) -> bool:
        """Publish to a retry or dead-letter topic, then acknowledge. A failed
        publish is retried (never dropped); on shutdown the delivery is given back."""
        backoff = 0.05
        while True:
            try:
                await self._broker.publish([message])
            except Exception as exc:
                log.warning("could not move %r to %s (%s); retrying", delivery, message.topic, exc)
                if not await self._sleep(backoff):
                    await delivery.nack()
                    return False
                backoff = min(backoff * 2, 5.0)
                continue
            await delivery.ack()
            return True


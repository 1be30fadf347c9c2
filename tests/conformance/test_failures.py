"""Conformance cases 4, 12, 13: failing handlers, retry stages, dead letters, poison."""

from __future__ import annotations

from collections import Counter

from herald import Context, DeadLetters, Message, RetryPolicy
from herald.retry import ATTEMPTS, ERROR_MESSAGE, ERROR_TYPE, GROUP, ORIGINAL_TOPIC, REASON

from .conftest import Brokers
from .helpers import Blob, Ping, eventually, wait_for

FAST = {"backoff": 0.001, "max_backoff": 0.005}


async def test_nack_and_error(brokers: Brokers) -> None:
    """K2, I6: events whose handler fails twice still arrive, and all the others too."""
    app = brokers.app("errors")
    calls: Counter[int] = Counter()
    done: set[int] = set()

    @app.subscriber("flaky", group="g", retry=RetryPolicy(attempts=3, stages=0, **FAST))
    async def handle(event: Ping) -> None:
        calls[event.seq] += 1
        if event.seq % 10 == 0 and calls[event.seq] <= 2:
            raise ValueError(f"fail #{calls[event.seq]}")
        done.add(event.seq)

    async with app:
        await app.publish_batch("flaky", [Ping(seq=i) for i in range(200)])
        await eventually(lambda: len(done) == 200, what="all 200 handled")
        assert all(calls[i] == 3 for i in range(0, 200, 10))
        assert not await app.admin().read_topic("fail-flaky")


async def test_retry_stages_then_dead_letter_then_replay(brokers: Brokers) -> None:
    """K2: with 2 stages the handler sees retry counts 0, 1, 2, then a dead letter."""
    app = brokers.app("stages")
    seen: list[tuple[int, int]] = []
    healthy = False

    policy = RetryPolicy(attempts=2, stages=2, stage_delay=0.05, **FAST)

    @app.subscriber("orders", group="billing", retry=policy)
    async def handle(event: Ping, ctx: Context) -> None:
        seen.append((ctx.retry_count, ctx.attempt))
        if not healthy:
            raise RuntimeError("payment service down")

    async with app:
        event_id = await app.publish("orders", Ping(seq=1), key="order-1")
        dead = DeadLetters(app.broker, policy)
        letters = await wait_for(lambda: dead.list("orders"), bool, what="a dead letter")
        assert len(letters) == 1, "an always-failing event must end in fail-orders"
        assert seen == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]
        letter = letters[0]
        assert letter.event_id == event_id and letter.key == "order-1"
        assert letter.topic == "fail-orders" and letter.original_topic == "orders"
        assert letter.group == "billing" and letter.reason == "handler-error"
        assert letter.error_type == "RuntimeError" and "payment service down" in letter.error_message
        assert letter.attempts == 6
        assert letter.first_failure and letter.last_failure
        assert letter.first_failure <= letter.last_failure
        assert letter.headers[ORIGINAL_TOPIC] == "orders"
        shown = await dead.show(letter.id)
        assert shown.body == letter.body

        healthy = True
        seen.clear()
        await dead.replay(letter.id)
        await eventually(lambda: seen == [(0, 1)], what="replayed event handled")
        assert await dead.list("orders") == []


async def test_discard_dead_letter(brokers: Brokers) -> None:
    app = brokers.app("discard")

    @app.subscriber("t", group="g", retry=RetryPolicy(attempts=1, stages=0))
    async def handle(event: Ping) -> None:
        raise KeyError("nope")

    async with app:
        await app.publish("t", Ping(seq=1))
        dead = DeadLetters(app.broker)
        letters = await wait_for(dead.list, bool, what="a dead letter")
        assert letters and letters[0].error_type == "KeyError"
        await dead.discard(letters[0].id)
        assert await dead.list() == []


async def test_poison_input(brokers: Brokers) -> None:
    """Undecodable bytes, an unknown type and a bad schema go straight to dead letters."""
    app = brokers.app("poison")
    handled: list[int] = []

    @app.subscriber("in", group="g", retry=RetryPolicy(attempts=3, stages=3))
    async def handle(event: Ping) -> None:
        handled.append(event.seq)

    def ce(type_: str, **extra: str) -> dict[str, str]:
        return {"ce_id": f"id-{type_}", "ce_source": "test", "ce_type": type_,
                "ce_specversion": "1.0", "content-type": "application/json", **extra}

    async with app:
        await app.broker.publish([
            Message("in", b"\x00\xffnot an event", {}),
            Message("in", b'{"seq": 1}', ce("no.such.type")),
            Message("in", b'{"seq": "one"}', ce("conformance.ping")),
            Message("in", b"{not json", ce("conformance.ping")),
            Message("in", b'{"seq": 2}', ce("conformance.ping", **{"x-retry-count": "many"})),
            Message("in", b'{"seq": 3}', ce("conformance.ping", ce_dataversion="9")),
        ])
        await app.publish("in", Ping(seq=42))
        await eventually(lambda: handled == [42], what="the worker stays up")
        records = await wait_for(lambda: app.admin().read_topic("fail-in"),
                                 lambda r: len(r) == 6, what="six dead letters")
    reasons = sorted(r.headers[REASON] for r in records)
    assert reasons == sorted(
        ["not-an-event", "unknown-type", "schema", "decode", "bad-retry-header", "version"]
    )
    for record in records:
        assert record.headers[GROUP] == "g"
        assert record.headers[ERROR_TYPE] and record.headers[ERROR_MESSAGE]
        assert record.headers[ATTEMPTS] == "0", "poison is never retried"


async def test_known_but_unsubscribed_type_is_skipped(brokers: Brokers) -> None:
    app = brokers.app("filter")
    handled: list[int] = []

    @app.subscriber("mixed", group="g", types=[Ping])
    async def handle(event: Ping) -> None:
        handled.append(event.seq)

    async with app:
        await app.publish("mixed", Blob(data="not for this handler"))
        await app.publish("mixed", Ping(seq=7))
        await eventually(lambda: handled == [7], what="ping handled")
        assert await app.admin().read_topic("fail-mixed") == []


async def test_replay_with_custom_prefixes(brokers: Brokers) -> None:
    """A replay finds the subscriber's own retry topic, whatever its prefixes."""
    app = brokers.app("prefixes")
    seen: list[int] = []
    healthy = False
    policy = RetryPolicy(attempts=1, stages=0, retry_prefix="again-", dead_letter_prefix="dead-")

    @app.subscriber("jobs", group="g", retry=policy)
    async def handle(event: Ping) -> None:
        if not healthy:
            raise RuntimeError("not yet")
        seen.append(event.seq)

    async with app:
        await app.publish("jobs", Ping(seq=3))
        # A tool that only knows the dead-letter prefix, not the retry prefix.
        dead = DeadLetters(app.broker, RetryPolicy(dead_letter_prefix="dead-"))
        letters = await wait_for(lambda: dead.list("jobs"), bool, what="a dead letter in dead-jobs")
        assert letters[0].topic == "dead-jobs"
        healthy = True
        await dead.replay(letters[0].id)
        await eventually(lambda: seen == [3], what="the replay reached the handler")

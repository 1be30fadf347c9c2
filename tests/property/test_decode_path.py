"""Whatever arrives, the consumer's decode path answers with an event or a DecodeError.

Poison input (DESIGN.md 4.5) must never crash a consumer or be redelivered
forever: anything but a DecodeError escaping the decode path would be
treated as a bug of ours and the message given back, again and again.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from herald import (
    App,
    Context,
    DecodeError,
    Envelope,
    Event,
    Message,
    PayloadDecoder,
    RetryPolicy,
    upcaster,
)
from herald.codecs import JSON, PROTOBUF, encode_payload
from herald.event import type_name_of, user_headers, version_of
from herald.retry import REASON, RETRY_COUNT
from herald.upcasting import Upcasters

from ..unit.protos import UserSync


class Ping(Event, type="test.property.ping", version=2):
    seq: int
    note: str = ""
    tags: list[str] = []


class Pong(Event, type="test.property.pong"):
    seq: int
    at: float


class Unsubscribed(Event, type="test.property.unsubscribed"):
    """Known to the process, taken by no handler here: skipped, not dead-lettered."""

    x: int


@upcaster("test.property.ping", from_version=1)
def ping_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    payload["note"] = payload.pop("text")  # v1 called it "text"; KeyError when it lacks one
    return payload


PRIVATE_UPCASTERS = Upcasters()


@PRIVATE_UPCASTERS.register("test.property.ping", from_version=1)
def strict_ping_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"seq": payload["seq"], "note": payload["text"]}  # KeyError on odd input: still poison


TYPES = [
    "test.property.ping", "test.property.pong", "test.property.unsubscribed", "herald.test.UserSync",
]
DECODERS: dict[str, PayloadDecoder] = {
    "typed": PayloadDecoder.for_annotation(Ping),
    "union": PayloadDecoder.for_annotation(Ping | Pong),
    "dict": PayloadDecoder.for_annotation(dict),
    "bytes": PayloadDecoder.for_annotation(bytes),
    "envelope": PayloadDecoder.for_annotation(Envelope),
    "protobuf": PayloadDecoder.for_annotation(UserSync),
    "mixed": PayloadDecoder.for_annotation(list[UserSync | Pong]),
    "private-upcasters": PayloadDecoder([Ping], upcast=PRIVATE_UPCASTERS),
}

# -- strategies -----------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(_json),
    st.builds(Ping, seq=st.integers(), note=st.text(max_size=20)).map(lambda e: encode_payload(e)[0]),
    st.fixed_dictionaries({"seq": st.integers(-(2**70), 2**70), "text": json_values}).map(_json),
    st.builds(Pong, seq=st.integers(), at=st.floats(allow_nan=False)).map(lambda e: encode_payload(e)[0]),
    st.builds(UserSync, user_id=st.integers(-(2**63), 2**63 - 1), name=st.text(max_size=20))
    .map(lambda m: m.SerializeToString()),
    st.sampled_from([b"", b"{}", b"[]", b"null", b'{"seq": "1"}', b"\x08\x01",
                     b'{"seq": 1, "note": "boom"}']),  # the last one makes the handler raise
    # nested deeper than any parser's stack
    st.tuples(st.sampled_from([b"", b'{"seq": 1, "tags": ', b'{"extra": ']), st.integers(1, 20_000))
    .map(lambda pair: pair[0] + b"[" * pair[1]),
)

some_text = st.text(max_size=30)
digits = st.integers(-3, 5).map(str)
# Mostly valid values, so that the input gets past the envelope and reaches the codecs.
ce_headers = st.fixed_dictionaries(
    {
        "ce_id": st.one_of(st.uuids().map(str), st.uuids().map(str), some_text),
        "ce_source": st.one_of(st.just("producer"), some_text),
        "ce_type": st.one_of(st.sampled_from(TYPES), st.sampled_from(TYPES), some_text),
    },
    optional={
        "ce_specversion": st.one_of(st.sampled_from(["1.0", "1.0", "2.0", "1.x"]), some_text),
        "ce_dataversion": st.one_of(
            st.sampled_from(["1", "2", "2"]), digits, some_text,
            st.sampled_from(["\u00b2", "\u0663", " 1", "9" * 5000]),
        ),
        "content-type": st.one_of(
            st.sampled_from([JSON, JSON, PROTOBUF, "application/json; charset=utf-8",
                             "application/x-protobuf", "text/plain", "application/cloudevents+json"]),
            some_text,
        ),
        "ce_time": some_text,
        "ce_subject": some_text,
        "ce_correlationid": some_text,
        RETRY_COUNT: st.one_of(digits, some_text, st.just("\u00b2")),
    },
)
random_headers = st.dictionaries(st.text(max_size=15), st.text(max_size=30), max_size=6)
headers = st.one_of(
    random_headers,  # usually not a CloudEvent at all
    st.tuples(random_headers, ce_headers).map(lambda pair: {**pair[0], **pair[1]}),
    ce_headers,
)
payloads = st.one_of(
    st.builds(Ping, seq=st.integers(), note=st.text(max_size=10), tags=st.lists(st.text(max_size=5))),
    st.builds(Pong, seq=st.integers(), at=st.floats(allow_nan=False)),
    st.builds(UserSync, user_id=st.integers(-(2**63), 2**63 - 1), name=st.text(max_size=10)),
    st.builds(Unsubscribed, x=st.integers()),
)


@st.composite
def published_then_damaged(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    """A real event as a herald producer sends it, then maybe headers changed or the body replaced."""
    payload = draw(payloads)
    data, content_type = encode_payload(payload)
    cls = type(payload)
    envelope = Envelope(
        id=str(draw(st.uuids())), source="producer", type=type_name_of(cls), data=data,
        datacontenttype=content_type, dataversion=version_of(cls) if isinstance(payload, Event) else None,
    )
    hdrs = envelope.to_headers(draw(random_headers))
    names = st.sampled_from([*sorted(hdrs), "ce_dataversion", "ce_specversion", RETRY_COUNT])
    hdrs.update(draw(st.dictionaries(names, st.one_of(digits, some_text), max_size=2)))
    body = draw(st.one_of(st.just(data), st.integers(0, len(data)).map(lambda cut: data[:cut]), bodies))
    return hdrs, body


messages = st.one_of(st.tuples(headers, bodies), published_then_damaged())


SKIPPED = object()


def decode_like_the_consumer(decoder: PayloadDecoder, headers: dict[str, str], body: bytes) -> Any:
    """What `Consumer._prepare` does between the broker and the handler."""
    envelope = Envelope.from_headers(headers, body)
    if not decoder.accepts(envelope.type):
        return SKIPPED  # a known type some other handler takes
    return decoder.decode(envelope)


@settings(max_examples=200, deadline=None)
@given(message=messages)
def test_decoding_anything_gives_an_event_or_a_decode_error(message: tuple[dict[str, str], bytes]) -> None:
    headers, body = message
    for kind, decoder in DECODERS.items():
        try:
            result = decode_like_the_consumer(decoder, headers, body)
        except DecodeError as error:
            assert error.kind, "a DecodeError says what kind of poison it is: it becomes herald-reason"
            event(f"{kind}: DecodeError {error.kind}")
            continue
        if result is SKIPPED:
            assert decoder.targets
            assert headers["ce_type"] not in decoder.targets
            event(f"{kind}: skipped")
            continue
        if decoder.targets:
            assert isinstance(result, tuple(decoder.targets.values()))
        elif decoder.raw == "bytes":
            assert result == body
        event(f"{kind}: decoded")


ATTRIBUTES = {"id", "source", "type", "specversion", "time", "subject", "dataversion", "correlationid",
              "causationid", "traceparent", "aggregatetype"}
extension_names = st.text(min_size=1, max_size=10).filter(lambda name: name not in ATTRIBUTES)
non_empty = st.text(min_size=1, max_size=30)
optional_text = st.none() | st.text(max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    envelope=st.builds(
        Envelope,
        id=non_empty, source=non_empty, type=non_empty, data=st.binary(max_size=50),
        specversion=st.just("1.0"), time=optional_text, subject=optional_text,
        datacontenttype=optional_text, dataversion=st.none() | st.integers(1, 10**17),
        correlationid=optional_text, causationid=optional_text, traceparent=optional_text,
        aggregatetype=optional_text,
        extensions=st.dictionaries(extension_names, st.text(max_size=20), max_size=4),
    ),
    user=st.dictionaries(
        st.text(max_size=15).filter(lambda k: not k.startswith("ce_") and k != "content-type"),
        st.text(max_size=30), max_size=4,
    ),
)
def test_any_envelope_round_trips_through_headers(envelope: Envelope, user: dict[str, str]) -> None:
    headers = envelope.to_headers(user)

    assert Envelope.from_headers(headers, envelope.data) == envelope
    assert user_headers(headers) == user


# -- end to end, on the memory broker ---------------------------------------------
TOPIC = "poison"
DEAD = "fail-poison"
raw_messages = st.lists(st.tuples(messages, st.none() | st.text(max_size=10)), min_size=1, max_size=6)


async def _wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():  # noqa: ASYNC110 - polls the broker, nothing to wait on
            await asyncio.sleep(0.005)


def test_any_message_is_handled_skipped_or_dead_lettered_and_the_consumer_lives_on() -> None:
    with asyncio.Runner() as runner:
        app = App("property", broker="memory://?partitions=2", shutdown_timeout=5)
        handled: list[str] = []
        numbers = itertools.count()

        @app.subscriber(TOPIC, group="g", retry=RetryPolicy(attempts=1, stages=0))
        async def handle(event: Ping | Pong, ctx: Context) -> None:
            if isinstance(event, Ping) and event.note == "boom":
                raise RuntimeError("boom")  # a handler error: dead-lettered after one attempt
            handled.append(ctx.headers["x-seq"])

        def stats() -> dict[str, int]:
            (only,) = app.stats().values()
            return only

        async def run(messages: list[tuple[tuple[dict[str, str], bytes], str | None]]) -> None:
            admin = app.admin()
            dead_before = await admin.read_topic(DEAD, limit=100_000)
            after = dead_before[-1].offset if dead_before else 0
            skipped_before, handled_before = stats()["skipped"], len(handled)
            batch = [f"m{next(numbers)}" for _ in messages]
            await app.broker.publish([
                Message(TOPIC, body, {**hdrs, "x-seq": seq}, key)
                for seq, ((hdrs, body), key) in zip(batch, messages, strict=True)
            ])

            async def settled() -> bool:
                dead = await admin.read_topic(DEAD, after=after, limit=100_000)
                done = len(dead) + len(handled) - handled_before + stats()["skipped"] - skipped_before
                return done >= len(batch)

            try:
                await _wait_until(settled)
            except TimeoutError:
                # A message neither handled nor dead-lettered is being redelivered forever (look
                # for "it will be redelivered" in the log); it also blocks every later example,
                # so hypothesis may call the failure flaky.
                raise AssertionError(f"not settled after 5 s: {stats()}, handled {handled}") from None
            dead = await admin.read_topic(DEAD, after=after, limit=100_000)
            dead_seqs = [d.headers["x-seq"] for d in dead]
            new_handled = handled[handled_before:]
            skipped = stats()["skipped"] - skipped_before
            assert not set(dead_seqs) & set(new_handled)
            assert len(dead_seqs) + len(new_handled) + skipped == len(batch)
            assert set(dead_seqs) | set(new_handled) <= set(batch)
            for letter in dead:
                assert letter.headers[REASON], "a dead letter says why"
                assert letter.headers["herald-original-topic"] == TOPIC
            # still alive: a valid event published last is handled
            final = f"final-{next(numbers)}"
            await app.publish(TOPIC, Ping(seq=1, note="ok"), headers={"x-seq": final})
            await _wait_until(_true_when(lambda: final in handled))

        @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(messages=raw_messages)
        def check(messages: list[tuple[tuple[dict[str, str], bytes], str | None]]) -> None:
            runner.run(run(messages))

        runner.run(app.start())
        try:
            check()
            assert stats()["dead_lettered"] > 0  # the inputs did reach the poison paths
        finally:
            runner.run(app.stop())


def _true_when(predicate: Callable[[], bool]) -> Callable[[], Any]:
    async def condition() -> bool:
        return predicate()

    return condition


def test_a_poison_message_with_an_odd_attempts_header_is_still_dead_lettered() -> None:
    async def scenario() -> None:
        app = App("property-attempts", broker="memory://", shutdown_timeout=1)

        @app.subscriber(TOPIC, group="g", retry=RetryPolicy(attempts=1, stages=0))
        async def handle(event: Ping) -> None:
            pass

        async with app:
            await app.broker.publish([Message(TOPIC, b"junk", {"herald-attempts": "\u00b2"})])

            async def dead_lettered() -> bool:
                return bool(await app.admin().read_topic(DEAD))

            await _wait_until(dead_lettered, timeout=2)

    asyncio.run(scenario())

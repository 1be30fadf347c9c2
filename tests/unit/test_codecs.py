"""Codecs and the decoder a handler's annotation picks."""

from __future__ import annotations

from typing import Any, Optional

import msgspec
import pytest

from herald import ConfigError, DecodeError, Envelope, Event, PayloadDecoder, UnknownEventType
from herald.codecs import JSON, OCTET_STREAM, PROTOBUF, encode_payload, json_codec, media_type

from .protos import UserSync


class OrderPlaced(Event, type="test.codecs.order.placed"):
    order_id: int
    total: float
    items: list[str] = []


class OrderCancelled(Event, type="test.codecs.order.cancelled"):
    order_id: int
    reason: str


class NotForThisHandler(Event, type="test.codecs.not-for-this-handler"):
    x: int


def envelope_of(payload: Any, *, type: str | None = None, content_type: str | None = None,
                dataversion: int | None = None) -> Envelope:
    """An envelope as the consumer would read it off the broker."""
    data, content = encode_payload(payload, content_type)
    if type is None:
        type = getattr(payload, "__event_type__", None) or payload.DESCRIPTOR.full_name
    return Envelope(id="e-1", source="test", type=type, data=data, datacontenttype=content,
                    dataversion=dataversion)


def raw_envelope(data: bytes, type: str, content_type: str | None = JSON) -> Envelope:
    return Envelope(id="e-1", source="test", type=type, data=data, datacontenttype=content_type)


# -- JSON --------------------------------------------------------------------
def test_json_round_trip_of_an_event() -> None:
    event = OrderPlaced(order_id=1, total=9.5, items=["book", "pen ✓"])

    data, content_type = encode_payload(event)

    assert content_type == JSON
    assert msgspec.json.decode(data) == {"order_id": 1, "total": 9.5, "items": ["book", "pen ✓"]}
    assert PayloadDecoder([OrderPlaced]).decode(envelope_of(event)) == event


def test_dicts_and_lists_encode_as_json_and_bytes_as_octet_stream() -> None:
    assert encode_payload({"a": [1, 2]}) == (b'{"a":[1,2]}', JSON)
    assert encode_payload(b"\x00\xff") == (b"\x00\xff", OCTET_STREAM)
    assert encode_payload(bytearray(b"ab"), "text/plain") == (b"ab", "text/plain")


def test_json_content_type_with_parameters_or_suffix_is_still_json() -> None:
    assert encode_payload({"a": 1}, "application/json; charset=utf-8")[1] == (
        "application/json; charset=utf-8"
    )
    assert encode_payload({"a": 1}, "application/cloudevents+json")[1] == "application/cloudevents+json"
    decoder = PayloadDecoder([OrderPlaced])
    data = b'{"order_id": 3, "total": 1}'
    for content_type in ("application/json; charset=utf-8", "Application/JSON", "application/x+json"):
        event = decoder.decode(raw_envelope(data, OrderPlaced.__event_type__, content_type))
        assert event == OrderPlaced(order_id=3, total=1.0)
    assert media_type(" Application/JSON ; charset=utf-8") == "application/json"


def test_unencodable_payload_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot encode object as JSON"):
        encode_payload(object())
    with pytest.raises(ConfigError, match="no codec for content type 'text/csv'"):
        encode_payload({"a": 1}, "text/csv")


def test_missing_content_type_means_json() -> None:
    envelope = raw_envelope(b'{"order_id": 1, "total": 2}', OrderPlaced.__event_type__, None)
    assert PayloadDecoder([OrderPlaced]).decode(envelope) == OrderPlaced(order_id=1, total=2.0)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"order_id": "one", "total": 2}', "$.order_id"),  # wrong field type
        (b'{"total": 2}', "order_id"),  # missing field
        (b'{"order_id": 1, "total": 2, "items": [1]}', "$.items[0]"),  # wrong element type
        (b"[1, 2]", "object"),  # not an object at all
    ],
)
def test_payload_that_fails_validation_is_a_schema_error(body: bytes, where: str) -> None:
    with pytest.raises(DecodeError, match="OrderPlaced") as info:
        PayloadDecoder([OrderPlaced]).decode(raw_envelope(body, OrderPlaced.__event_type__))

    assert info.value.kind == "schema"
    assert where in str(info.value)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"\xff\xfe", b'{"order_id": 1', b'{"extra": ' + b"[" * 100_000],  # too deep
)
@pytest.mark.parametrize("raw", [None, "json"])
def test_invalid_json_is_a_decode_error(body: bytes, raw: str | None) -> None:
    decoder = PayloadDecoder(raw=raw) if raw else PayloadDecoder([OrderPlaced])

    with pytest.raises(DecodeError, match="not valid JSON") as info:
        decoder.decode(raw_envelope(body, OrderPlaced.__event_type__))

    assert info.value.kind == "decode"


def test_json_codec_convert_validates_too() -> None:
    assert json_codec.convert({"order_id": 1, "total": 1}, OrderPlaced) == OrderPlaced(order_id=1, total=1)
    with pytest.raises(DecodeError) as info:
        json_codec.convert({"order_id": []}, OrderPlaced)
    assert info.value.kind == "schema"


# -- what a handler asks for ------------------------------------------------------
def test_decoder_for_one_event_class() -> None:
    decoder = PayloadDecoder.for_annotation(OrderPlaced)

    assert decoder.targets == {"test.codecs.order.placed": OrderPlaced}
    assert decoder.raw is None


@pytest.mark.parametrize(
    "annotation", [OrderPlaced | OrderCancelled, Optional[OrderPlaced | OrderCancelled]]  # noqa: UP045
)
def test_decoder_for_a_union_takes_each_member(annotation: Any) -> None:
    decoder = PayloadDecoder.for_annotation(annotation)

    placed = decoder.decode(envelope_of(OrderPlaced(order_id=1, total=2)))
    cancelled = decoder.decode(envelope_of(OrderCancelled(order_id=1, reason="late")))

    assert set(decoder.targets) == {"test.codecs.order.placed", "test.codecs.order.cancelled"}
    assert isinstance(placed, OrderPlaced)
    assert isinstance(cancelled, OrderCancelled)


def test_decoder_for_a_batch_uses_the_element_type() -> None:
    decoder = PayloadDecoder.for_annotation(list[OrderPlaced | OrderCancelled])
    assert set(decoder.targets) == {"test.codecs.order.placed", "test.codecs.order.cancelled"}
    assert PayloadDecoder.for_annotation(list[OrderPlaced]).targets == {
        "test.codecs.order.placed": OrderPlaced
    }


@pytest.mark.parametrize("annotation", [dict, dict[str, Any], Any, object])
def test_decoder_for_plain_json(annotation: Any) -> None:
    decoder = PayloadDecoder.for_annotation(annotation)
    envelope = raw_envelope(b'{"anything": [1, "two", null]}', "some.type.nobody.declared")

    assert decoder.raw == "json"
    assert decoder.accepts("some.type.nobody.declared")
    assert decoder.decode(envelope) == {"anything": [1, "two", None]}


def test_plain_json_handler_refuses_other_content_types() -> None:
    envelope = raw_envelope(b"\x08\x01", "x", PROTOBUF)
    with pytest.raises(DecodeError, match="handler wants JSON") as info:
        PayloadDecoder.for_annotation(dict).decode(envelope)
    assert info.value.kind == "schema"


def test_decoder_for_bytes_and_envelope_hands_them_over_undecoded() -> None:
    envelope = raw_envelope(b"\x00 not json \xff", "whatever", OCTET_STREAM)

    assert PayloadDecoder.for_annotation(bytes).decode(envelope) == b"\x00 not json \xff"
    assert PayloadDecoder.for_annotation(Envelope).decode(envelope) is envelope


def test_explicit_types_win_over_the_annotation() -> None:
    decoder = PayloadDecoder.for_annotation(Any, [OrderCancelled])
    assert decoder.targets == {"test.codecs.order.cancelled": OrderCancelled}


@pytest.mark.parametrize("annotation", [int, str, list, OrderPlaced | int, list[int], msgspec.Struct])
def test_unsupported_annotation_is_a_config_error(annotation: Any) -> None:
    with pytest.raises(ConfigError, match="cannot decode events into"):
        PayloadDecoder.for_annotation(annotation)


# -- which types a handler takes ------------------------------------------------------
def test_accepts_skips_known_types_the_handler_did_not_ask_for() -> None:
    decoder = PayloadDecoder.for_annotation(OrderPlaced)

    assert decoder.accepts("test.codecs.order.placed")
    assert not decoder.accepts("test.codecs.not-for-this-handler")  # known: skipped, not an error


def test_unknown_type_is_let_through_and_dead_lettered_by_decode() -> None:
    decoder = PayloadDecoder.for_annotation(OrderPlaced)

    assert decoder.accepts("test.codecs.never.declared")
    with pytest.raises(UnknownEventType, match=r"test\.codecs\.never\.declared") as info:
        decoder.decode(raw_envelope(b"{}", "test.codecs.never.declared"))

    assert info.value.kind == "unknown-type"
    assert "test.codecs.order.placed" in str(info.value)  # says what it does take


def test_a_protobuf_type_another_handler_takes_is_skipped_not_dead_lettered() -> None:
    PayloadDecoder.for_annotation(UserSync)  # some handler of this process takes UserSync
    json_only = PayloadDecoder.for_annotation(OrderPlaced)

    assert not json_only.accepts("herald.test.UserSync")


# -- Protobuf -------------------------------------------------------------------
def test_protobuf_round_trip() -> None:
    message = UserSync(user_id=2**40, name="Zoë 東京")

    data, content_type = encode_payload(message)
    decoder = PayloadDecoder.for_annotation(UserSync)
    decoded = decoder.decode(envelope_of(message))

    assert content_type == PROTOBUF
    assert data == message.SerializeToString()
    assert decoder.targets == {"herald.test.UserSync": UserSync}
    assert decoded == message
    assert (decoded.user_id, decoded.name) == (2**40, "Zoë 東京")


def test_protobuf_and_json_events_in_one_union() -> None:
    decoder = PayloadDecoder.for_annotation(UserSync | OrderPlaced)

    assert decoder.decode(envelope_of(UserSync(user_id=1))) == UserSync(user_id=1)
    assert decoder.decode(envelope_of(OrderPlaced(order_id=1, total=0))) == OrderPlaced(order_id=1, total=0)


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/vnd.google.protobuf"])
def test_protobuf_aliases(content_type: str) -> None:
    message = UserSync(user_id=5, name="n")
    envelope = envelope_of(message, content_type=content_type)
    assert envelope.datacontenttype == content_type
    assert PayloadDecoder([UserSync]).decode(envelope) == message


@pytest.mark.parametrize("garbage", [b"\xff" * 10, b"\x12\x02\xff\xfe", b"\x08"])
def test_garbage_into_a_protobuf_target_is_a_decode_error(garbage: bytes) -> None:
    with pytest.raises(DecodeError, match="not a valid UserSync") as info:
        PayloadDecoder([UserSync]).decode(raw_envelope(garbage, "herald.test.UserSync", PROTOBUF))
    assert info.value.kind == "decode"


def test_json_into_a_protobuf_target_is_a_decode_error() -> None:
    # e.g. a producer that did not set content-type: JSON is assumed
    envelope = raw_envelope(b'{"user_id": 1}', "herald.test.UserSync", None)
    with pytest.raises(DecodeError, match="Protobuf message, but the event came as application/json") as info:
        PayloadDecoder([UserSync]).decode(envelope)
    assert info.value.kind == "schema"


def test_protobuf_into_a_json_event_is_a_schema_error() -> None:
    envelope = raw_envelope(b"\x08\x01", OrderPlaced.__event_type__, PROTOBUF)
    with pytest.raises(DecodeError, match="Protobuf message class") as info:
        PayloadDecoder([OrderPlaced]).decode(envelope)
    assert info.value.kind == "schema"


def test_unknown_content_type_is_a_decode_error() -> None:
    envelope = raw_envelope(b"a,b", OrderPlaced.__event_type__, "text/csv")
    with pytest.raises(DecodeError, match="no codec for content type 'text/csv'") as info:
        PayloadDecoder([OrderPlaced]).decode(envelope)
    assert info.value.kind == "decode"


def test_encoding_a_non_protobuf_as_protobuf_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a Protobuf message"):
        encode_payload({"a": 1}, PROTOBUF)


def test_not_for_this_handler_is_really_declared() -> None:
    assert NotForThisHandler(x=1).x == 1  # keeps the class (and its registration) in use

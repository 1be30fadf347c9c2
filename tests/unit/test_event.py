"""Events and their CloudEvents envelope, as a user declares and reads them."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from herald import ConfigError, DecodeError, Envelope, Event, registry
from herald.event import type_name_of, user_headers, version_of


class TodoCompleted(Event, type="test.event.todo.completed", version=2, subject="todo_id",
                    aggregate="todo"):
    todo_id: int
    user_id: int
    title: str


class PlainlyNamed(Event):
    note: str


# -- declaring events ---------------------------------------------------------
def test_class_keywords_set_type_version_subject_and_aggregate() -> None:
    event = TodoCompleted(todo_id=41, user_id=7, title="write tests")

    assert type_name_of(TodoCompleted) == "test.event.todo.completed"
    assert version_of(TodoCompleted) == 2
    assert TodoCompleted.__aggregate_type__ == "todo"
    assert event.event_subject() == "41"  # the aggregate id, as a string
    assert registry.get("test.event.todo.completed") is TodoCompleted
    assert "test.event.todo.completed" in registry.types()


def test_type_defaults_to_class_name_and_version_to_1() -> None:
    assert type_name_of(PlainlyNamed) == "PlainlyNamed"
    assert version_of(PlainlyNamed) == 1
    assert PlainlyNamed(note="x").event_subject() is None
    assert registry.get("PlainlyNamed") is PlainlyNamed


def test_subclass_of_an_event_gets_its_own_default_type() -> None:
    class Base(Event, type="test.event.base"):
        a: int

    class Derived(Base):
        b: int

    assert type_name_of(Base) == "test.event.base"
    assert type_name_of(Derived) == "Derived"
    assert Derived(a=1, b=2).a == 1


def test_events_are_keyword_only_and_validated_on_decode() -> None:
    with pytest.raises(TypeError):
        TodoCompleted(1, 2, "positional")  # type: ignore[misc]
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"todo_id": "one", "user_id": 1, "title": "t"}', type=TodoCompleted)


def test_a_subclass_may_add_required_fields_after_defaulted_ones() -> None:
    class Created(Event, type="test.event.created"):
        title: str
        done: bool = False

    class CreatedWithOwner(Created, type="test.event.created-with-owner"):
        owner: str  # required, after a defaulted field: fine because keyword-only

    event = CreatedWithOwner(title="t", owner="ann")
    assert (event.title, event.done, event.owner) == ("t", False, "ann")


@pytest.mark.parametrize("version", [0, -1, "2", 1.5])
def test_bad_version_is_a_config_error(version: object) -> None:
    with pytest.raises(ConfigError, match="version must be an integer >= 1"):
        class Bad(Event, type="test.event.bad", version=version):  # type: ignore[call-arg]
            x: int


def test_subject_must_name_a_field() -> None:
    with pytest.raises(ConfigError, match="subject='nope' is not a field"):
        class Bad(Event, type="test.event.bad-subject", subject="nope"):
            x: int


# -- the envelope on the wire -------------------------------------------------
def full_envelope() -> Envelope:
    return Envelope(
        id="0b5e4d3c-1111-4222-8333-944445555666",
        source="todo",
        type="test.event.todo.completed",
        data=b'{"todo_id": 41}',
        time="2024-05-01T12:00:00.000000Z",
        subject="41",
        datacontenttype="application/json",
        dataversion=2,
        correlationid="corr-1",
        causationid="cause-1",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        aggregatetype="todo",
        extensions={"tenant": "acme", "région": "Île-de-France ✓"},
    )


def test_envelope_round_trips_through_headers_with_everything() -> None:
    envelope = full_envelope()
    user = {"x-request-id": "r-1", "x-note": "naïve café — 東京 🚀"}

    headers = envelope.to_headers(user)
    back = Envelope.from_headers(headers, envelope.data)

    assert back == envelope
    assert back.time_datetime == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert user_headers(headers) == user
    assert headers["ce_tenant"] == "acme"
    assert headers["content-type"] == "application/json"
    assert headers["ce_dataversion"] == "2"
    assert headers["ce_specversion"] == "1.0"


def test_minimal_envelope_round_trips_and_leaves_optional_headers_out() -> None:
    envelope = Envelope(id="1", source="svc", type="t")

    headers = envelope.to_headers()

    assert headers == {"ce_id": "1", "ce_source": "svc", "ce_type": "t", "ce_specversion": "1.0"}
    back = Envelope.from_headers(headers, b"")
    assert back == envelope
    assert back.time_datetime is None


def test_an_extension_cannot_overwrite_an_attribute() -> None:
    envelope = Envelope(id="real", source="svc", type="t", extensions={"id": "fake", "type": "x"})

    headers = envelope.to_headers()

    assert headers["ce_id"] == "real"
    assert headers["ce_type"] == "t"


def test_user_headers_cannot_overwrite_attributes_either() -> None:
    headers = full_envelope().to_headers({"ce_id": "fake", "content-type": "text/plain"})

    assert headers["ce_id"] == full_envelope().id
    assert headers["content-type"] == "application/json"


def test_user_headers_drop_ce_attributes_and_content_type() -> None:
    headers = {
        "ce_id": "1", "ce_type": "t", "ce_anything": "ext", "content-type": "application/json",
        "x-mine": "kept", "Content-Type-Like": "kept too", "cex": "kept (no underscore)",
    }

    assert user_headers(headers) == {
        "x-mine": "kept", "Content-Type-Like": "kept too", "cex": "kept (no underscore)",
    }


# -- what is not a CloudEvent ---------------------------------------------------
VALID = {"ce_id": "1", "ce_source": "svc", "ce_type": "t"}


@pytest.mark.parametrize("header", ["ce_id", "ce_source", "ce_type"])
def test_missing_required_attribute_is_not_an_event(header: str) -> None:
    headers = {k: v for k, v in VALID.items() if k != header}

    with pytest.raises(DecodeError, match=header) as info:
        Envelope.from_headers(headers, b"{}")

    assert info.value.kind == "not-an-event"


def test_empty_required_attribute_is_not_an_event() -> None:
    with pytest.raises(DecodeError) as info:
        Envelope.from_headers({**VALID, "ce_id": ""}, b"{}")
    assert info.value.kind == "not-an-event"


def test_no_headers_at_all_names_all_three() -> None:
    with pytest.raises(DecodeError, match="ce_id, ce_source, ce_type") as info:
        Envelope.from_headers({}, b"raw bytes from some other producer")
    assert info.value.kind == "not-an-event"


@pytest.mark.parametrize(
    "dataversion", ["two", "", "1.5", "-1", "0", " 2", "2_0", "\u0663", "\u00b2", "9" * 5000]
)
def test_bad_dataversion_is_a_bad_envelope(dataversion: str) -> None:
    with pytest.raises(DecodeError, match="ce_dataversion") as info:
        Envelope.from_headers({**VALID, "ce_dataversion": dataversion}, b"{}")
    assert info.value.kind == "bad-envelope"


def test_good_dataversion_is_read_as_int() -> None:
    assert Envelope.from_headers({**VALID, "ce_dataversion": "3"}, b"").dataversion == 3


@pytest.mark.parametrize("specversion", ["2.0", "0.3", ""])
def test_unsupported_specversion_is_a_bad_envelope(specversion: str) -> None:
    with pytest.raises(DecodeError, match="specversion") as info:
        Envelope.from_headers({**VALID, "ce_specversion": specversion}, b"{}")
    assert info.value.kind == "bad-envelope"


def test_decode_error_is_a_herald_error_with_reason() -> None:
    with pytest.raises(DecodeError) as info:
        Envelope.from_headers({}, b"")
    assert info.value.reason == str(info.value)

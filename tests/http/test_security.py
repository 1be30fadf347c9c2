"""Garbage in: every bad request gets a clear 4xx in the `{"error", "detail"}`
shape, and nothing is published by mistake or lost."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from herald import App
from herald.http.cloudevents_http import BATCH, STRUCTURED
from tests.http.conftest import (
    AUTH,
    PUBLISH_TOKEN,
    READ_TOKEN,
    all_records,
    binary_headers,
    gateway_client,
    records,
    structured_event,
)

E = "/topics/orders/events"
LONG = "t" * 250


def without(name: str) -> dict[str, str]:
    headers = binary_headers()
    del headers[name]
    return headers


def structured(body: Any, content_type: str = STRUCTURED) -> dict[str, Any]:
    return {"headers": {**AUTH, "content-type": content_type},
            "content": body if isinstance(body, bytes) else json.dumps(body).encode()}


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


# (id, method, path, request options, status, error code)
CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    # authentication and scopes
    ("no-token", "POST", E, {"headers": {k: v for k, v in binary_headers().items() if k != "authorization"}},
     401, "unauthorized"),
    ("wrong-token", "POST", E, {"headers": {**binary_headers(), "authorization": "Bearer " + "x" * 30}},
     401, "unauthorized"),
    ("token-prefix", "POST", E,
     {"headers": {**binary_headers(), "authorization": AUTH["authorization"][:-1]}},
     401, "unauthorized"),
    ("basic-scheme", "POST", E, {"headers": {**binary_headers(), "authorization": "Basic dXNlcjpwdw=="}},
     401, "unauthorized"),
    ("empty-bearer", "POST", E, {"headers": {**binary_headers(), "authorization": "Bearer "}},
     401, "unauthorized"),
    ("read-token-publishes", "POST", E,
     {"headers": {**binary_headers(), "authorization": f"Bearer {READ_TOKEN}"}}, 403, "forbidden"),
    ("publish-token-reads", "GET", "/topics", {"headers": {"authorization": f"Bearer {PUBLISH_TOKEN}"}},
     403, "forbidden"),
    ("read-token-replays", "POST", "/deadletters/fail-orders@1/replay",
     {"headers": {"authorization": f"Bearer {READ_TOKEN}"}}, 403, "forbidden"),
    ("read-token-discards", "DELETE", "/deadletters/fail-orders@1",
     {"headers": {"authorization": f"Bearer {READ_TOKEN}"}}, 403, "forbidden"),
    ("no-token-dead-letters", "GET", "/deadletters", {}, 401, "unauthorized"),
    # sizes
    ("oversized", "POST", E, {"headers": binary_headers(), "content": b"0" * 2000}, 413, "too-large"),
    ("oversized-batch", "POST", E, structured([structured_event(id=str(i), data=None) for i in range(11)],
                                              BATCH), 413, "too-large"),
    # malformed CloudEvents, binary mode
    ("no-ce-headers", "POST", E, {"headers": {**AUTH, "content-type": "application/json"},
                                  "content": b'{"a": 1}'}, 400, "bad-event"),
    ("no-specversion", "POST", E, {"headers": without("ce-specversion"), "content": b"{}"}, 400, "bad-event"),
    ("no-id", "POST", E, {"headers": without("ce-id"), "content": b"{}"}, 400, "bad-event"),
    ("no-type", "POST", E, {"headers": without("ce-type"), "content": b"{}"}, 400, "bad-event"),
    ("no-source", "POST", E, {"headers": without("ce-source"), "content": b"{}"}, 400, "bad-event"),
    ("empty-id", "POST", E, {"headers": binary_headers(ce_id=""), "content": b"{}"}, 400, "bad-event"),
    ("old-specversion", "POST", E, {"headers": binary_headers(ce_specversion="0.3"), "content": b"{}"},
     400, "bad-event"),
    ("bad-json-data", "POST", E, {"headers": binary_headers(), "content": b"{not json"}, 400, "bad-json"),
    ("bad-time", "POST", E, {"headers": binary_headers(ce_time="yesterday"), "content": b"{}"},
     400, "bad-event"),
    ("naive-time", "POST", E, {"headers": binary_headers(ce_time="2024-05-01T12:00:00"), "content": b"{}"},
     400, "bad-event"),
    ("bad-dataversion", "POST", E, {"headers": binary_headers(ce_dataversion="0"), "content": b"{}"},
     400, "bad-event"),
    ("control-char-id", "POST", E, {"headers": binary_headers(ce_id="a%0Ab"), "content": b"{}"},
     400, "bad-event"),
    ("bad-percent-utf8", "POST", E, {"headers": binary_headers(ce_subject="%FF%FE"), "content": b"{}"},
     400, "bad-event"),
    ("ce-datacontenttype", "POST", E,
     {"headers": binary_headers(ce_datacontenttype="text/plain"), "content": b"{}"}, 400, "bad-event"),
    ("bad-extension-name", "POST", E, {"headers": binary_headers(ce_my_ext="x"), "content": b"{}"},
     400, "bad-event"),
    # malformed CloudEvents, structured and batch modes
    ("structured-bad-json", "POST", E, structured(b'{"specversion": "1.0",'), 400, "bad-json"),
    ("structured-empty", "POST", E, structured(b""), 400, "bad-json"),
    ("structured-not-object", "POST", E, structured("just a string"), 400, "bad-event"),
    ("structured-array", "POST", E, structured([structured_event()]), 400, "bad-event"),
    ("structured-no-specversion", "POST", E,
     structured({k: v for k, v in structured_event().items() if k != "specversion"}), 400, "bad-event"),
    ("structured-no-id", "POST", E, structured(structured_event(id=None)), 400, "bad-event"),
    ("structured-no-type", "POST", E, structured(structured_event(type=None)), 400, "bad-event"),
    ("structured-no-source", "POST", E, structured(structured_event(source=None)), 400, "bad-event"),
    ("structured-id-number", "POST", E, structured(structured_event(id=1.5)), 400, "bad-event"),
    ("structured-object-attribute", "POST", E, structured(structured_event(subject={"a": 1})),
     400, "bad-event"),
    ("structured-upper-name", "POST", E, structured(structured_event(Tenant="x")), 400, "bad-event"),
    ("structured-both-data", "POST", E, structured(structured_event(data_base64="AAAA")), 400, "bad-event"),
    ("structured-bad-base64", "POST", E,
     structured(structured_event(data=None, data_base64="not base64!")), 400, "bad-event"),
    ("structured-text-data-object", "POST", E,
     structured(structured_event(datacontenttype="text/plain", data={"a": 1})), 400, "bad-event"),
    ("structured-latin1", "POST", E, structured(structured_event(), STRUCTURED + "; charset=latin-1"),
     415, "unsupported-media-type"),
    ("structured-xml", "POST", E, structured(b"<event/>", "application/cloudevents+xml"),
     415, "unsupported-media-type"),
    ("batch-object", "POST", E, structured(structured_event(), BATCH), 400, "bad-event"),
    ("batch-empty", "POST", E, structured([], BATCH), 400, "bad-event"),
    ("batch-one-bad", "POST", E, structured([structured_event(id="1"), structured_event(id="2"),
                                             structured_event(id="3", source="")], BATCH), 400, "bad-event"),
    # topics
    ("empty-topic", "POST", "/topics//events", {"headers": binary_headers(), "content": b"{}"},
     404, "not-found"),
    ("long-topic", "POST", f"/topics/{LONG}/events", {"headers": binary_headers(), "content": b"{}"},
     400, "bad-topic"),
    ("dotdot-topic", "POST", "/topics/../events", {"headers": binary_headers(), "content": b"{}"},
     404, "not-found"),
    ("encoded-dotdot-topic", "POST", "/topics/%2E%2E/events", {"headers": binary_headers(), "content": b"{}"},
     400, "bad-topic"),
    ("slash-topic", "POST", "/topics/a%2Fb/events", {"headers": binary_headers(), "content": b"{}"},
     404, "not-found"),
    ("nul-topic", "POST", "/topics/a%00b/events", {"headers": binary_headers(), "content": b"{}"},
     400, "bad-topic"),
    ("newline-topic", "POST", "/topics/a%0Ab/events", {"headers": binary_headers(), "content": b"{}"},
     400, "bad-topic"),
    ("space-topic", "POST", "/topics/a%20b/events", {"headers": binary_headers(), "content": b"{}"},
     400, "bad-topic"),
    ("unicode-topic", "POST", "/topics/ord%C3%A9rs/events", {"headers": binary_headers(), "content": b"{}"},
     400, "bad-topic"),
    ("retry-topic", "POST", "/topics/retry-orders/events", {"headers": binary_headers(), "content": b"{}"},
     400, "bad-topic"),
    ("dead-letter-topic", "POST", "/topics/fail-orders/events",
     {"headers": binary_headers(), "content": b"{}"},
     400, "bad-topic"),
    # keys and query
    ("long-key", "POST", E, {"headers": binary_headers(), "content": b"{}", "params": {"key": "k" * 1025}},
     400, "bad-key"),
    ("control-key", "POST", E, {"headers": binary_headers(), "content": b"{}", "params": {"key": "a\x01"}},
     400, "bad-key"),
    ("empty-key", "POST", E, {"headers": binary_headers(), "content": b"{}", "params": {"key": ""}},
     400, "bad-key"),
    ("keys-differ", "POST", E,
     {"headers": binary_headers(x_message_key="a"), "content": b"{}", "params": {"key": "b"}},
     400, "bad-request"),
    ("partitionkey-differs", "POST", E,
     {"headers": binary_headers(ce_partitionkey="a"), "content": b"{}", "params": {"key": "b"}},
     400, "bad-key"),
    ("unknown-query", "POST", E, {"headers": binary_headers(), "content": b"{}", "params": {"kye": "a"}},
     400, "bad-query"),
    ("twice-query", "POST", E + "?key=a&key=a", {"headers": binary_headers(), "content": b"{}"},
     400, "bad-query"),
    ("negative-delay", "POST", E, {"headers": binary_headers(), "content": b"{}", "params": {"delay": "-1"}},
     400, "bad-query"),
    ("nan-delay", "POST", E, {"headers": binary_headers(), "content": b"{}", "params": {"delay": "nan"}},
     400, "bad-query"),
    ("inf-delay", "POST", E, {"headers": binary_headers(), "content": b"{}", "params": {"delay": "1e999"}},
     400, "bad-query"),
    ("zero-limit", "GET", "/deadletters", {"headers": AUTH, "params": {"limit": "0"}}, 400, "bad-query"),
    ("word-limit", "GET", "/deadletters", {"headers": AUTH, "params": {"limit": "ten"}}, 400, "bad-query"),
    ("huge-limit", "GET", "/deadletters", {"headers": AUTH, "params": {"limit": "9" * 50}}, 400, "bad-query"),
    ("bad-dl-topic", "GET", "/deadletters", {"headers": AUTH, "params": {"topic": "../x"}}, 400, "bad-topic"),
    ("maybe-bool", "POST", "/deadletters/fail-orders@1/replay",
     {"headers": AUTH, "params": {"to_topic": "maybe"}},
     400, "bad-query"),
    # dead-letter ids
    ("bad-dl-id", "GET", "/deadletters/nothing-here", {"headers": AUTH}, 400, "bad-id"),
    ("dl-id-word-offset", "GET", "/deadletters/fail-orders@x", {"headers": AUTH}, 400, "bad-id"),
    ("missing-dl", "GET", "/deadletters/fail-orders@999", {"headers": AUTH}, 404, "not-found"),
    ("replay-missing-dl", "POST", "/deadletters/fail-orders@999/replay", {"headers": AUTH}, 404, "not-found"),
    ("ordinary-topic-as-dl", "DELETE", "/deadletters/orders@1", {"headers": AUTH}, 404, "not-found"),
    ("ordinary-topic-replay", "POST", "/deadletters/orders@1/replay", {"headers": AUTH}, 404, "not-found"),
    # routes
    ("no-route", "GET", "/nothing", {"headers": AUTH}, 404, "not-found"),
    ("wrong-method", "PUT", E, {"headers": binary_headers(), "content": b"{}"}, 405, "method-not-allowed"),
    ("unknown-topic", "GET", "/topics/never", {"headers": AUTH}, 404, "not-found"),
    ("unknown-group", "GET", "/groups/never", {"headers": AUTH}, 404, "not-found"),
    ("no-store", "GET", "/streams", {"headers": AUTH}, 404, "not-found"),
]


@pytest.fixture
async def guarded(broker_url: str) -> AsyncIterator[tuple[App, Any]]:
    """A gateway with small limits over an App that holds one event in `orders`."""
    app = App("gw", broker=broker_url)
    async with gateway_client(app, max_body=1000, max_batch=10) as client:
        answer = await client.post(E, headers=binary_headers(ce_id="kept"), content=b'{"n": 1}')
        assert answer.status_code == 202
        yield app, client


@pytest.mark.parametrize(("method", "path", "options", "status", "error"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_requests_get_a_clear_4xx_and_publish_nothing(
    guarded: tuple[App, Any], method: str, path: str, options: dict[str, Any], status: int, error: str
) -> None:
    app, client = guarded
    answer = await client.request(method, path, **options)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == error, body
    assert 10 < len(body["detail"]) < 600, body
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")
    # Nothing published by mistake, nothing lost: only the event stored before.
    assert await all_records(app) == 1
    [kept] = await records(app, "orders")
    assert kept.headers["ce_id"] == "kept"


async def test_a_body_streamed_without_a_length_is_cut_at_the_limit(guarded: tuple[App, Any]) -> None:
    app, client = guarded

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 100

    answer = await client.post(E, headers=binary_headers(), content=chunks())
    assert answer.status_code == 413
    assert answer.json()["error"] == "too-large"
    assert await all_records(app) == 1


async def test_a_lying_content_length_is_refused(guarded: tuple[App, Any]) -> None:
    app, client = guarded
    answer = await client.post(E, headers={**binary_headers(), "content-length": "99999"}, content=b"{}")
    assert answer.status_code == 413
    assert await all_records(app) == 1


async def test_a_bad_batch_publishes_none_of_its_events(guarded: tuple[App, Any]) -> None:
    app, client = guarded
    batch = [structured_event(id=str(i)) for i in range(5)] + [{"specversion": "1.0"}]
    answer = await client.post(E, headers={**AUTH, "content-type": BATCH}, json=batch)
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("event 5")
    assert await all_records(app) == 1


async def test_a_dead_letter_route_never_deletes_an_ordinary_record(guarded: tuple[App, Any]) -> None:
    app, client = guarded
    [kept] = await records(app, "orders")
    for method, path in (("DELETE", f"/deadletters/orders@{kept.offset}"),
                         ("POST", f"/deadletters/orders@{kept.offset}/replay"),
                         ("GET", f"/deadletters/orders@{kept.offset}")):
        answer = await client.request(method, path, headers=AUTH)
        assert answer.status_code == 404, answer.text
    assert [r.headers["ce_id"] for r in await records(app, "orders")] == ["kept"]


async def test_tokens_compare_whole_values(guarded: tuple[App, Any]) -> None:
    _, client = guarded
    tries = (AUTH["authorization"] + "x", AUTH["authorization"].upper(), "Bearer\t" + READ_TOKEN + "\x00")
    for value in tries:
        answer = await client.get("/topics", headers={"authorization": value})
        assert answer.status_code == 401, value
    lower_scheme = await client.get("/topics", headers={"authorization": "bearer " + READ_TOKEN})
    assert lower_scheme.status_code == 200


@pytest.mark.parametrize("content_type", ["application/json", STRUCTURED, BATCH])
async def test_deeply_nested_json_is_bad_json_not_a_crash(content_type: str) -> None:
    app = App("gw", broker="memory://")
    async with gateway_client(app) as client:
        answer = await client.post(E, headers={**binary_headers(), "content-type": content_type},
                                   content=deep(5000))
        assert answer.status_code == 400
        assert answer.json()["error"] == "bad-json"
        assert await all_records(app) == 0

"""The dashboard's routes and the gateway items that came with it, without a
browser: static files and their headers, the info, rates and trace routes,
GET /metrics, and the traceparent a published event takes from the request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from herald import App, Context, Event, RetryPolicy
from herald.errors import ConfigError
from herald.http import create_gateway
from herald.store.sqlite import SqliteEventStore
from tests.http.conftest import AUTH, READ_TOKEN, binary_headers, gateway_client, records, structured_event

READ = {"authorization": f"Bearer {READ_TOKEN}"}
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTHER_TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Asked(Event, type="t.asked"):
    n: int


class Answered(Event, type="t.answered"):
    n: int


async def test_the_page_and_its_files_are_served_with_a_strict_policy() -> None:
    async with gateway_client(App("gw", broker="memory://")) as client:
        page = await client.get("/dashboard/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert '<script type="module" src="app.js">' in page.text
        script = await client.get("/dashboard/app.js")
        assert script.headers["content-type"].startswith("text/javascript")
        again = await client.get("/dashboard/app.js", headers={"if-none-match": script.headers["etag"]})
        assert again.status_code == 304
        for missing in ("/dashboard/nothing.js", "/dashboard/..%2Fgateway.py", "/dashboard/__init__.py"):
            answer = await client.get(missing)
            assert answer.status_code == 404, missing
            assert answer.json()["error"] == "not-found"
        bare = await client.get("/dashboard", follow_redirects=False)
        assert bare.status_code in (301, 307) and bare.headers["location"].endswith("/dashboard/")


def test_no_vendored_or_remote_code_in_the_page() -> None:
    static = Path(__file__).resolve().parents[2] / "src/herald/http/dashboard/static"
    for path in static.iterdir():
        text = path.read_text()
        assert "http://" not in text.replace('"http://www.w3.org/2000/svg"', ""), path.name
        assert "https://" not in text, path.name
        assert "innerHTML" not in text, path.name  # text goes in through textContent only


async def test_the_dashboard_can_be_left_out() -> None:
    async with gateway_client(App("gw", broker="memory://"), dashboard=False) as client:
        assert (await client.get("/dashboard/")).status_code == 404
        assert (await client.get("/api/dashboard/info")).status_code == 404
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert not [p for p in paths if "dashboard" in p]


async def test_info_is_open_and_the_rest_needs_a_token() -> None:
    async with gateway_client(App("gw", broker="memory://")) as client:
        info = (await client.get("/api/dashboard/info")).json()
        assert info["app"] == "gw" and info["auth"] is True and info["store"] is False
        assert info["dead_letter_prefixes"] == ["fail-"]
        for path in ("/api/dashboard/rates", "/api/dashboard/traces/x", "/api/dashboard/topics/t/records"):
            assert (await client.get(path)).status_code == 401, path


async def test_rates_are_samples_of_record_counts_at_most_one_a_second() -> None:
    app = App("gw", broker="memory://")
    async with gateway_client(app) as client:
        await app.publish("orders", Asked(n=1))
        first = (await client.get("/api/dashboard/rates", headers=READ)).json()
        assert first["samples"][-1]["messages"]["orders"] == 1
        again = (await client.get("/api/dashboard/rates", headers=READ)).json()
        assert len(again["samples"]) == len(first["samples"]) == 1  # within the second: no new sample
        await app.publish("orders", Asked(n=2))
        await asyncio.sleep(1.05)
        later = (await client.get("/api/dashboard/rates", headers=READ)).json()
        assert [s["messages"]["orders"] for s in later["samples"]] == [1, 2]


async def test_topic_records_are_read_as_cloudevents_a_page_at_a_time() -> None:
    app = App("gw", broker="memory://")
    async with gateway_client(app) as client:
        for n in range(3):
            await app.publish("orders", Asked(n=n), key="k")
        page = (await client.get("/api/dashboard/topics/orders/records", params={"limit": 2},
                                 headers=READ)).json()
        assert [r["event"]["data"]["n"] for r in page["records"]] == [0, 1]
        rest = (await client.get("/api/dashboard/topics/orders/records",
                                 params={"after": page["next"]}, headers=READ)).json()
        assert [r["event"]["data"]["n"] for r in rest["records"]] == [2]
        assert rest["records"][0]["key"] == "k"


async def test_a_trace_is_the_causal_tree_of_one_correlation_id(tmp_path: Path) -> None:
    app = App("front", broker=f"sqlite:///{tmp_path}/b.db", retry=RetryPolicy(attempts=1, stages=0))
    done = asyncio.Event()

    @app.subscriber("questions", group="answerer")
    async def answer(event: Asked, ctx: Context) -> None:
        await ctx.publish("answers", Answered(n=event.n))
        await ctx.publish("answers", Answered(n=event.n + 100))

    @app.subscriber("answers", group="picky")
    async def picky(event: Answered) -> None:
        if event.n >= 100:
            raise ValueError("too big")
        done.set()

    store = SqliteEventStore(str(tmp_path / "e.db"))
    async with gateway_client(app, store=store) as client:
        root = app.envelope(Asked(n=1))
        await app.publish("questions", root)
        await store.append("question-1", [root])
        await asyncio.wait_for(done.wait(), 10)
        for _ in range(200):
            if await records(app, "fail-answers"):
                break
            await asyncio.sleep(0.02)
        await app.publish("questions", Asked(n=2))  # another chain: not in this trace
        tree = (await client.get(f"/api/dashboard/traces/{root.id}", headers=READ)).json()
        missing = await client.get("/api/dashboard/traces/nobody", headers=READ)
        scanned = await client.get(f"/api/dashboard/traces/{root.id}", params={"scan": "1"}, headers=READ)
    nodes = tree["nodes"]
    assert [(n["type"], n["depth"]) for n in nodes] == [("t.asked", 0), ("t.answered", 1), ("t.answered", 1)]
    assert nodes[0]["parent"] is None and {n["parent"] for n in nodes[1:]} == {root.id}
    assert nodes[0]["streams"] == [{"stream": "question-1", "version": 1, "position": 1}]
    assert [t["topic"] for t in nodes[0]["topics"]] == ["questions"]
    assert all(n["since_parent_ms"] >= 0 for n in nodes[1:])
    dead = [n for n in nodes if n["dead_letters"]]
    assert len(dead) == 1 and dead[0]["dead_letters"][0]["error"] == "too big"
    assert dead[0]["topics"] and dead[0]["topics"][0]["topic"] == "answers"  # one node, two places
    assert tree["services"] == ["front"]
    assert (missing.status_code, missing.json()["error"]) == (404, "not-found")
    assert "questions" in scanned.json()["searched"]["truncated"]


async def test_metrics_are_served_with_the_read_scope_when_asked() -> None:
    registry = CollectorRegistry()
    Counter("dashboard_test_things", "Things.", registry=registry).inc(3)
    async with gateway_client(App("gw", broker="memory://"), metrics=registry) as client:
        assert (await client.get("/metrics")).status_code == 401
        answer = await client.get("/metrics", headers=READ)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert "dashboard_test_things_total 3.0" in answer.text
        described = (await client.get("/openapi.json")).json()["paths"]["/metrics"]["get"]
        assert described["x-herald-scope"] == "read"
    async with gateway_client(App("gw", broker="memory://"), metrics=True) as client:
        assert "python_info" in (await client.get("/metrics", headers=READ)).text  # the global registry
    async with gateway_client(App("gw", broker="memory://")) as client:
        assert (await client.get("/metrics", headers=READ)).status_code == 404
    with pytest.raises(ConfigError, match="CollectorRegistry or True"):
        create_gateway(App("gw", broker="memory://"), metrics="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(("headers", "expected"), [
    ({"traceparent": TRACE}, TRACE),
    ({"ce-traceparent": TRACE}, TRACE),
    ({"traceparent": TRACE, "ce-traceparent": OTHER_TRACE}, TRACE),
    ({"traceparent": "not-a-trace", "ce-traceparent": TRACE}, TRACE),
    ({"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, None),
    ({"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, None),
    ({}, None),
])
async def test_a_structured_event_takes_the_requests_traceparent(
    headers: dict[str, str], expected: str | None
) -> None:
    app = App("gw", broker="memory://")
    async with gateway_client(app) as client:
        answer = await client.post("/topics/orders/events", json=structured_event(),
                                   headers={**AUTH, **headers,
                                            "content-type": "application/cloudevents+json"})
        assert answer.status_code == 202, answer.text
        [record] = await records(app, "orders")
    assert record.headers.get("ce_traceparent") == expected


async def test_an_events_own_traceparent_wins_over_the_requests() -> None:
    app = App("gw", broker="memory://")
    async with gateway_client(app) as client:
        own = await client.post("/topics/orders/events", headers={
            **AUTH, "traceparent": TRACE, "content-type": "application/cloudevents-batch+json"},
            json=[structured_event(id="a", traceparent=OTHER_TRACE), structured_event(id="b")])
        binary = await client.post("/topics/orders/events", content=b"{}",
                                   headers={**binary_headers(ce_id="c", ce_traceparent=OTHER_TRACE),
                                            "traceparent": TRACE})
        assert own.status_code == binary.status_code == 202
        stored = {r.headers["ce_id"]: r.headers.get("ce_traceparent") for r in await records(app, "orders")}
    assert stored == {"a": OTHER_TRACE, "b": TRACE, "c": OTHER_TRACE}

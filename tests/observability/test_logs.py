"""Structured logs: a JSON line per handler attempt with seed 002's fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from herald import App, Context, RetryPolicy
from herald.observability import JsonFormatter, TextFormatter, configure_logging, log_events
from tests.observability.helpers import OrderPlaced, wait_until


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging changes the root logger: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_each_attempt_is_one_json_line_with_the_event_fields(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(json=True, level="INFO", stream=stream)
    app = App("shop", broker="memory://", retry=RetryPolicy(attempts=2, backoff=0.001, stages=0))
    done: list[str] = []

    @app.subscriber("orders", group="billing")
    async def bill(event: OrderPlaced, ctx: Context) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("gateway timeout")
        ctx.log.info("charged %d", event.amount)
        done.append(event.order_id)

    log_events(app)
    async with app:
        event_id = await app.publish("orders", OrderPlaced(order_id="o-7", amount=30))
        await wait_until(lambda: done == ["o-7"])

    records = lines(stream)  # every line is JSON, whoever logged it
    events = [r for r in records if r["logger"] == "herald.events"]
    assert [(r["outcome"], r["attempt"], r["level"]) for r in events] == [
        ("error", 1, "WARNING"), ("ok", 2, "INFO"),
    ]
    for record in events:
        assert record["event_type"] == "shop.order_placed"
        assert record["aggregate_id"] == "o-7"
        assert record["topic"] == "orders"
        assert record["group"] == "billing"
        assert record["event_id"] == event_id
        assert record["correlation_id"] == event_id  # the first event of its chain
        assert isinstance(record["duration_ms"], float) and record["duration_ms"] >= 0
        assert record["time"].endswith("Z")
    failed, handled = events
    assert failed["error_type"] == "RuntimeError"
    assert "gateway timeout" in failed["message"]
    assert "Traceback" in failed["exception"]
    assert handled["message"] == "shop.order_placed handled"
    assert "exception" not in handled

    # A handler's own line through ctx.log carries the same fields.
    [charged] = [r for r in records if r["message"] == "charged 30"]
    assert charged["logger"] == "herald.shop"
    assert (charged["event_type"], charged["aggregate_id"], charged["topic"]) == (
        "shop.order_placed", "o-7", "orders",
    )


def test_json_formatter_writes_known_fields_first_and_odd_values_as_text() -> None:
    record = logging.LogRecord("herald.test", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.outcome = "ok"
    record.topic = "orders"
    record.custom = object()
    line = json.loads(JsonFormatter().format(record))
    assert list(line)[:6] == ["time", "level", "logger", "message", "topic", "outcome"]
    assert line["message"] == "hello you"
    assert line["custom"].startswith("<object object")


def test_text_formatter_appends_fields_as_key_value() -> None:
    record = logging.LogRecord("herald.test", logging.INFO, __file__, 1, "handled", (), None)
    record.topic = "orders"
    record.duration_ms = 1.5
    assert TextFormatter().format(record).endswith("herald.test: handled topic=orders duration_ms=1.5")


def test_the_format_comes_from_herald_log_format(
    root_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERALD_LOG_FORMAT", "json")
    monkeypatch.setenv("HERALD_LOG_LEVEL", "warning")
    stream = io.StringIO()
    handler = configure_logging(stream=stream)
    assert isinstance(handler.formatter, JsonFormatter)
    assert logging.getLogger().level == logging.WARNING
    logging.getLogger("herald.test").warning("careful", extra={"topic": "t"})
    assert lines(stream)[-1]["topic"] == "t"

    monkeypatch.setenv("HERALD_LOG_FORMAT", "text")
    again = configure_logging(stream=stream)
    assert isinstance(again.formatter, TextFormatter)
    # Calling again replaces herald's handler instead of adding a second one.
    assert [h for h in logging.getLogger().handlers if h.get_name() == "herald"] == [again]

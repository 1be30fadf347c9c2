"""Structured logs: one line per handled event with its type, aggregate id,
topic, duration and outcome (seed 002's event log), as JSON when asked.

```python
configure_logging()                 # text, or JSON when HERALD_LOG_FORMAT=json
configure_logging(json=True, level="DEBUG")
log_events(app)                     # a line per handler attempt
```

Fields travel as `extra=` attributes of the LogRecord, so any logger call can
add them (`log.info("paid", extra={"aggregate_id": order_id})`) and
`ctx.log` in a handler already does. `JsonFormatter` writes them as keys;
`TextFormatter` appends them as `key=value`.
"""

from __future__ import annotations

import json as _json
import logging
import os
import sys
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

from herald.app import App
from herald.context import Context
from herald.errors import ConfigError
from herald.observability._common import check_app, event_type_of
from herald.subscriber import Handler

FORMAT_ENV = "HERALD_LOG_FORMAT"  # "json" or "text"
LEVEL_ENV = "HERALD_LOG_LEVEL"  # a level name, e.g. "DEBUG"
# The fields this module knows, in the order they are written.
FIELDS = (
    "event_type", "aggregate_id", "topic", "group", "event_id", "correlation_id",
    "duration_ms", "outcome", "attempt",
)
# What every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_instrumented: weakref.WeakSet[App] = weakref.WeakSet()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the known
    fields present on the record, then any other `extra=` field, then
    `exception` (the traceback) if there is one. Values JSON cannot hold are
    written as their str()."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_extras(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = " ".join(f"{name}={value}" for name, value in _extras(record).items())
        return f"{text} {fields}" if fields else text


def configure_logging(
    json: bool | None = None,
    level: int | str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send the root logger's records to `stream` (stderr) as JSON or text.

    `json=None` reads HERALD_LOG_FORMAT (`json` or `text`, default text);
    `level=None` reads HERALD_LOG_LEVEL (default INFO). Calling it again
    replaces the handler it installed before (idempotent, not additive).
    Returns the handler. Raises ConfigError for a wrong value.
    """
    as_json = _format_choice(json)
    resolved = _level(level)  # read before anything changes: a bad value changes nothing
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    handler.set_name("herald")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "herald"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(resolved)
    return handler


def log_events(
    app: App, logger: logging.Logger | None = None, level: int | str = logging.INFO
) -> Callable[[Handler], Handler]:
    """Log every handler attempt of `app` with event_type, aggregate_id, topic,
    group, event_id, correlation_id, attempt, duration_ms and outcome (`ok`,
    or `error` at WARNING with the traceback). Call once per App, before it
    starts; returns the middleware it added."""
    if logger is not None and not isinstance(logger, logging.Logger):
        raise ConfigError(f"log_events: logger must be a logging.Logger, got {type(logger).__name__}")
    ok_level = _level(level, "log_events")
    app = check_app(app, "log_events", _instrumented)
    out = logger or logging.getLogger("herald.events")

    def middleware(handler: Handler) -> Handler:
        async def logged(ctx: Context) -> None:
            start = time.perf_counter()
            try:
                await handler(ctx)
            except Exception as exc:
                fields = event_fields(ctx, "error", start)
                fields["error_type"] = type(exc).__qualname__
                out.warning("%s failed: %s: %s", fields["event_type"], type(exc).__name__, exc,
                            exc_info=True, extra=fields)
                raise
            fields = event_fields(ctx, "ok", start)
            out.log(ok_level, "%s handled", fields["event_type"], extra=fields)

        return logged

    app.middleware(middleware)
    _instrumented.add(app)
    return middleware


def event_fields(ctx: Context, outcome: str, start: float) -> dict[str, Any]:
    """The log fields of one handler attempt that began at perf_counter() `start`."""
    envelope = ctx.envelope
    fields: dict[str, Any] = {
        "event_type": event_type_of(ctx),
        "aggregate_id": envelope.subject,
        "topic": ctx.topic,
        "group": ctx.group,
        "event_id": envelope.id,
        "correlation_id": envelope.correlationid,
        "duration_ms": round((time.perf_counter() - start) * 1000, 3),
        "outcome": outcome,
        "attempt": ctx.attempt,
    }
    if ctx.retry_count:
        fields["retry_count"] = ctx.retry_count
    if len(ctx.envelopes) > 1:
        fields["batch_size"] = len(ctx.envelopes)  # the ids above are the batch's first event
    return fields


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    extras = vars(record)
    known = {name: extras[name] for name in FIELDS if extras.get(name) is not None}
    others = {
        name: value
        for name, value in extras.items()
        if name not in _STANDARD and name not in known and name not in FIELDS
        and not name.startswith("_") and value is not None
    }
    return {**known, **others}


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def _format_choice(json: bool | None) -> bool:
    if json is not None:
        if not isinstance(json, bool):
            raise ConfigError(f"configure_logging: json must be True, False or None, got {json!r}")
        return json
    choice = os.environ.get(FORMAT_ENV, "text").strip().lower() or "text"
    if choice not in ("json", "text"):
        raise ConfigError(f"{FORMAT_ENV}={choice!r}: use 'json' or 'text'")
    return choice == "json"


def _level(level: int | str | None, what: str = "configure_logging") -> int:
    if level is None:
        level = os.environ.get(LEVEL_ENV, "INFO").strip() or "INFO"
    if isinstance(level, bool):
        raise ConfigError(f"{what}: level must be a level name or number, got {level!r}")
    if isinstance(level, int):
        return level
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        if isinstance(number, int):
            return number
    raise ConfigError(
        f"{what}: unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
